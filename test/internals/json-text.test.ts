/**
 * cli/json-text.ts, the CLI's messages and answers as text: how input splits into messages (one
 * value, or JSON lines), what is refused and how the refusal points at it, how a payload is written
 * into its envelope, and how an answer's payloads are found.
 */
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  answerElements,
  firstInvalidByte,
  InvalidMessage,
  messageDepth,
  payloadOf,
  splitMessages,
  wrapPayload,
} from '../../src/cli/json-text.js';
import { MAX_NESTING } from '../../src/envelope/json-scan.js';

const PAYLOAD = messageDepth(false);
const ENVELOPE = messageDepth(true);
const split = (text: string | Buffer, depth = PAYLOAD) =>
  splitMessages(Buffer.isBuffer(text) ? text : Buffer.from(text), 'stdin', depth).map((m) => m.toString('utf8'));
const refusal = (text: string | Buffer, depth = PAYLOAD): string => {
  try {
    split(text, depth);
  } catch (err) {
    assert.ok(err instanceof InvalidMessage, String(err));
    return err.message;
  }
  assert.fail(`accepted: ${String(text)}`);
};
const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

describe('splitting input into messages', () => {
  const cases: Array<[string, string, string[]]> = [
    [
      'one value, its bytes as written',
      ' {"n": 9007199254740993, "f": 1.0, "z": -0.0}\n',
      ['{"n": 9007199254740993, "f": 1.0, "z": -0.0}'],
    ],
    ['duplicate keys and escapes kept', '{"a":1,"a":"\\ud800\\u0000"}', ['{"a":1,"a":"\\ud800\\u0000"}']],
    ['one value over several lines', '{\n  "a": [1,\n 2]\n}\n', ['{\n  "a": [1,\n 2]\n}']],
    ['a scalar', '2e400', ['2e400']],
    [
      'JSON lines, blank and whitespace lines skipped, CRLF',
      '{"a":1}\r\n\n  \t\r\n[2.50]\r\n"x"',
      ['{"a":1}', '[2.50]', '"x"'],
    ],
    ['a leading byte-order mark is not text', '\ufeff{"a":1}', ['{"a":1}']],
  ];
  for (const [what, text, messages] of cases) it(what, () => assert.deepEqual(split(text), messages));

  it('refusals name the source, the line and the column', () => {
    assert.equal(refusal('{not json'), 'stdin is not valid JSON: expected a member name at column 2');
    assert.equal(
      refusal('{"a": 1}\n{"b": 2,}\n'),
      'stdin is not valid JSON: expected a member name at line 2, column 9',
    );
    // A value over several lines whose first line is no value: the error is the whole text's
    assert.equal(refusal('{\n  "a": [1 2]\n}'), "stdin is not valid JSON: expected ',' or ']' at line 2, column 11");
    assert.equal(refusal('{"a": "é", "b": tru}'), 'stdin is not valid JSON: expected a value at column 17');
    assert.equal(refusal('{"a": 1} {"b": 2}'), 'stdin is not valid JSON: unexpected data after the value at column 10');
    assert.equal(refusal(' \n\t'), 'stdin is empty: expected a JSON value');
    assert.equal(
      refusal(Buffer.from('{"a":1}\n{"b":"\xff"}', 'latin1')),
      'stdin is not valid UTF-8 at line 2, column 7',
    );
  });

  it('NaN and Infinity, which Python accepts, are refused as the runtime refuses them', () => {
    for (const [text, word, column] of [
      ['[1, NaN]', 'NaN', 5],
      ['{"a": Infinity}', 'Infinity', 7],
      ['-Infinity', '-Infinity', 1],
    ] as const) {
      const message = refusal(text);
      assert.ok(
        message.startsWith(`stdin is not valid JSON: ${word} at column ${column} is not a JSON number`),
        message,
      );
      assert.match(message, /msg_parsing_error/);
    }
  });

  it('nesting is bounded where the runtime bounds it: a payload sits one level inside its envelope', () => {
    assert.deepEqual(split(deep(MAX_NESTING - 1)), [deep(MAX_NESTING - 1)]);
    assert.match(
      refusal(deep(MAX_NESTING)),
      /^stdin is nested too deeply at column 1000: the runtime accepts at most 1000 levels/,
    );
    assert.deepEqual(split(deep(MAX_NESTING), ENVELOPE), [deep(MAX_NESTING)]);
    assert.match(refusal(deep(MAX_NESTING + 1), ENVELOPE), /nested too deeply/);
  });
});

describe('a payload in its envelope', () => {
  it('is written in as its bytes', () => {
    const payload = Buffer.from('{"n": 9007199254740993, "__proto__": -0.0}');
    const envelope = wrapPayload(payload, 'cli-1', ['a', 'b']);
    assert.equal(envelope.toString(), `{"id":"cli-1","route":{"actors":["a","b"],"current":0},"payload":${payload}}`);
  });
});

describe("an answer's payloads", () => {
  it('are spans of the answer: the last payload of each element, none for an element without one', () => {
    const answer = Buffer.from(
      ' [ {"route":{"current":1},"payload":1.0} , {"payload":2,"payload": [-0.0, 1e400]},{"error":"x"} ] ',
    );
    const elements = answerElements(answer);
    assert.deepEqual(
      elements.map((e) => answer.toString('utf8', e.start, e.end)),
      ['{"route":{"current":1},"payload":1.0}', '{"payload":2,"payload": [-0.0, 1e400]}', '{"error":"x"}'],
    );
    const payloads = elements.map((e) => payloadOf(answer, e)).map((p) => p && answer.toString('utf8', p.start, p.end));
    assert.deepEqual(payloads, ['1.0', '[-0.0, 1e400]', null]);
    assert.deepEqual(answerElements(Buffer.from('[]')), []);
    assert.deepEqual(answerElements(Buffer.from('{"a":1}')), [{ start: 0, end: 7 }]);
  });
});

describe('firstInvalidByte', () => {
  it('finds the first byte that is not UTF-8: everything before it is, and none is found in valid text (generated)', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 24 }),
      fc.string({ unit: 'binary', maxLength: 12 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
      fc
        .tuple(fc.string({ unit: 'binary', maxLength: 6 }), fc.uint8Array({ minLength: 1, maxLength: 3 }))
        .map(([s, tail]) => new Uint8Array([...Buffer.from(s, 'utf8'), ...tail])),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        const at = firstInvalidByte(b);
        assert.ok(isUtf8(b.subarray(0, at)), `the bytes before ${at} are UTF-8`);
        assert.equal(at === b.length, isUtf8(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('names the column of the byte, not of its line', () => {
    assert.throws(
      () => splitMessages(Buffer.from([...Buffer.from('{"c":"abcdé'), 0xff, ...Buffer.from('"}')]), 'stdin', 1),
      (err: Error) => err instanceof InvalidMessage && err.message === 'stdin is not valid UTF-8 at column 12',
    );
  });
});
