/** worker/handler-output.ts, as a table: a line the handler's process wrote → the record logged. Pure. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { outputRecord, PYTHON_LOG_MARK } from '../../src/worker/handler-output.js';

const mark = (fields: unknown) => PYTHON_LOG_MARK + JSON.stringify(fields);
const TB = 'Traceback (most recent call last):\n  File "m.py", line 3, in f\n    g()\nKeyError: 1';
const CHAIN = `${TB}\n\nDuring handling of the above exception, another exception occurred:\n\n${TB.replace('KeyError: 1', 'ValueError: x')}`;
const GROUP =
  '  + Exception Group Traceback (most recent call last):\n  |   File "m.py", line 1, in f\n  | ExceptionGroup: eg (1 sub-exception)\n  +-+---- 1 ----\n    | ValueError: x\n    +------------';

const rows: Array<[string, string, { level: string; msg: string; fields: Record<string, unknown>; id?: string }]> = [
  ['a plain line', 'hello', { level: 'info', msg: 'hello', fields: { stream: 'stdout' } }],
  [
    'a line that only looks structured',
    `${PYTHON_LOG_MARK}{not json`,
    { level: 'info', msg: `${PYTHON_LOG_MARK}{not json`, fields: { stream: 'stdout' } },
  ],
  ['one write of several lines', mark({ o: 'a\nb' }), { level: 'info', msg: 'a\nb', fields: { stream: 'stdout' } }],
  [
    'a traceback (print_exc): its exception is the message',
    mark({ o: TB }),
    { level: 'info', msg: 'KeyError: 1', fields: { stream: 'stdout', traceback: TB } },
  ],
  [
    'a chain: the last exception',
    mark({ o: CHAIN }),
    { level: 'info', msg: 'ValueError: x', fields: { stream: 'stdout', traceback: CHAIN } },
  ],
  [
    'a line, then its traceback (a logging handler)',
    mark({ o: `ERROR:root:failed\n${TB}` }),
    { level: 'info', msg: 'ERROR:root:failed', fields: { stream: 'stdout', traceback: TB } },
  ],
  [
    'an exception group: its first line',
    mark({ o: GROUP }),
    {
      level: 'info',
      msg: '+ Exception Group Traceback (most recent call last):',
      fields: { stream: 'stdout', traceback: GROUP },
    },
  ],
  [
    'a logging record',
    mark({ l: 40, n: 'm', m: 'failed', e: `${TB}\n`, i: 'msg-3' }),
    { level: 'error', msg: 'failed', fields: { logger: 'm', traceback: `${TB}\n` }, id: 'msg-3' },
  ],
  [
    'a custom level, by range',
    mark({ l: 5, n: 'm', m: 'trace' }),
    { level: 'debug', msg: 'trace', fields: { logger: 'm', traceback: undefined } },
  ],
  [
    'a warning',
    mark({
      l: 30,
      n: 'py.warnings',
      m: 'UserWarning: old',
      f: { category: 'UserWarning', filename: 'h.py', lineno: 7 },
    }),
    {
      level: 'warn',
      msg: 'UserWarning: old',
      fields: { logger: 'py.warnings', traceback: undefined, category: 'UserWarning', filename: 'h.py', lineno: 7 },
    },
  ],
];

describe('handler output: a line → its record', () => {
  for (const [what, line, expected] of rows) {
    it(what, () => {
      const { tail, ...record } = outputRecord('stdout', line);
      assert.deepEqual(record, expected);
      assert.ok(tail.length > 0);
    });
  }
});
