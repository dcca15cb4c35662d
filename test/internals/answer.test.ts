/**
 * worker/answer.ts, as a table: how a call ended → the bytes the client gets, the outcome counted, the
 * line logged (its level and message). Pure: no process, no socket.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type EnvelopeOutput, parseRequest } from '../../src/envelope/envelope.js';
import { type AnswerContext, answerFromDeath, answerFromOutcome, answerPastDeadline } from '../../src/worker/answer.js';
import type { CallOutcome } from '../../src/worker/channel.js';
import { DEFAULT_POLICY } from '../../src/worker/policy.js';

const request = parseRequest(
  Buffer.from('{"id":"a-1","route":{"actors":["x","y"],"current":0},"headers":{"trace_id":"t-9"},"payload":{"n":1}}'),
  true,
);
const at: AnswerContext = {
  envelope: request,
  ms: 12.5,
  validate: true,
  timeLimit: { softMs: 2000, killGraceMs: 500 },
};

function body(chunks: Buffer[]): unknown {
  const all = Buffer.concat(chunks);
  assert.equal(all.readUInt32BE(0), all.length - 4, 'framed');
  return JSON.parse(all.subarray(4).toString('utf8'));
}

const rows: Array<[string, CallOutcome, string, 'warn' | 'error' | null, RegExp | null]> = [
  ['a payload', { kind: 'payloads', payloads: [Buffer.from('{"m":2}')] }, 'ok', null, null],
  ['no payload (an empty fan-out)', { kind: 'payloads', payloads: [] }, 'ok', null, null],
  [
    'the handler raised',
    { kind: 'raised', type: 'KeyError', message: "'x'", traceback: 'Traceback...' },
    'processing_error',
    'error',
    /^handler raised KeyError: 'x'$/,
  ],
  [
    'an unencodable result',
    { kind: 'unencodable', type: 'TypeError', message: 'cannot be encoded: result["w"]: set', traceback: '' },
    'processing_error',
    'error',
    /cannot be encoded/,
  ],
  [
    'a payload Python cannot read',
    { kind: 'bad_input', type: 'JSONDecodeError', message: 'Expecting value', field: 'payload' },
    'msg_parsing_error',
    'warn',
    /^invalid JSON in field 'payload': Expecting value$/,
  ],
  [
    'an envelope Python cannot read',
    { kind: 'bad_input', type: 'RecursionError', message: 'too deep', field: 'envelope' },
    'msg_parsing_error',
    'warn',
    /^the envelope cannot be read by Python's json: too deep$/,
  ],
  [
    'interrupted by the time limit',
    { kind: 'timed_out', type: 'HandlerTimeout', message: 'x', traceback: 'tb', returned: false },
    'handler_timeout',
    'error',
    /ASYA_HANDLER_TIMEOUT=2s: it was interrupted \(HandlerTimeout raised in it\)/,
  ],
  [
    'interrupted, returned anyway',
    { kind: 'timed_out', type: 'HandlerTimeout', message: 'x', traceback: '', returned: true },
    'handler_timeout',
    'error',
    /returned afterwards \(its result was discarded\)/,
  ],
];

describe('answer: from how a call ended to bytes, outcome and line', () => {
  for (const [what, outcome, code, level, msg] of rows) {
    it(what, () => {
      const answer = answerFromOutcome(outcome, at);
      assert.equal(answer.outcome, code);
      const sent = body(answer.chunks) as Array<Record<string, unknown>>;
      if (code === 'ok') {
        assert.equal(answer.line, undefined, 'a success has no line here (the supervisor writes it after the bytes)');
        assert.equal(answer.outputs, sent.length);
        assert.deepEqual(sent[0]?.route ?? { actors: ['x', 'y'], current: 1 }, { actors: ['x', 'y'], current: 1 });
        return;
      }
      assert.equal(sent[0]?.error, code);
      assert.equal(answer.line?.level, level);
      assert.match(answer.line!.msg, msg!);
      assert.equal(answer.line?.fields.id, 'a-1');
      assert.equal(answer.line?.fields.trace_id, 't-9');
      assert.equal(answer.line?.fields.outcome, code);
      assert.equal(answer.line?.fields.ms, 12.5);
    });
  }

  it('a response that cannot be built (an envelope-mode output breaking the rules) is a processing_error', () => {
    const answer = answerFromOutcome(
      { kind: 'envelopes', outputs: [[Buffer.from('{"route":{"actors":["x"],"current":7}}'), Buffer.from('1')]] },
      at,
    );
    assert.equal(answer.outcome, 'processing_error');
    assert.equal(answer.line?.level, 'error');
  });

  it('an envelope-mode output whose route.current did not move: a notice, once per load (the supervisor keeps count)', () => {
    const output = (current: number): EnvelopeOutput => [
      Buffer.from(`{"route":{"actors":["x","y"],"current":${current}}}`),
      Buffer.from('1'),
    ];
    const stayed = answerFromOutcome({ kind: 'envelopes', outputs: [output(1), output(0)] }, at);
    assert.equal(stayed.outcome, 'ok');
    assert.equal(stayed.notice?.once, 'route_unmoved');
    assert.equal(stayed.notice?.level, 'warn');
    assert.match(stayed.notice!.msg, /^output envelope\[1\/2\] keeps route\.current=0 \(actor "x", this one\)/);
    assert.deepEqual({ ...stayed.notice!.fields }, { id: 'a-1', trace_id: 't-9', output: 1, current: 0, actor: 'x' });
    assert.equal(answerFromOutcome({ kind: 'envelopes', outputs: [output(1)] }, at).notice, undefined);
    // Unchecked outputs (validation off) are not read at all.
    const unchecked = answerFromOutcome({ kind: 'envelopes', outputs: [output(0)] }, { ...at, validate: false });
    assert.equal(unchecked.notice, undefined);
  });

  for (const [reason, code, msg] of [
    ['timeout', 'handler_timeout', /nor within ASYA_HANDLER_KILL_GRACE=0\.5s/],
    ['crash', 'worker_crashed', /died while handling this message \(killed by SIGKILL\)/],
    ['corrupt', 'worker_crashed', /died while handling this message/],
  ] as const) {
    it(`the process died (${reason})`, () => {
      const answer = answerFromDeath({ reason, exitCode: null, signal: 'SIGKILL', stderrTail: 'last words' }, at);
      assert.equal(answer.outcome, code);
      assert.equal(answer.line?.level, 'error');
      assert.match(answer.line!.msg, msg);
      assert.equal((body(answer.chunks) as Array<{ error: string }>)[0]?.error, code);
    });
  }

  it('past its deadline', () => {
    const answer = answerPastDeadline('2026-12-03T07:00:00Z', 2.25, at);
    assert.equal(answer.outcome, 'deadline_exceeded');
    assert.equal(answer.line?.level, 'warn');
    assert.match(answer.line!.msg, /deadline 2026-12-03T07:00:00Z had passed 2\.250 s/);
    const sent = body(answer.chunks) as Array<{ details: Record<string, unknown> }>;
    assert.equal(sent[0]?.details.missed_seconds, 2.25);
  });

  it('the time limit in the messages is the policy the answer is given', () => {
    const answer = answerFromDeath(
      { reason: 'timeout', exitCode: null, signal: 'SIGKILL', stderrTail: '' },
      { ...at, timeLimit: DEFAULT_POLICY.timeLimit },
    );
    assert.match(answer.line!.msg, /ASYA_HANDLER_KILL_GRACE=5s/);
  });
});
