/** envelope/envelope.ts: the rules on a request's bytes and the responses built from them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envelopeModeResponse, parseRequest, payloadModeResponse, routeProblem } from '../../src/envelope/envelope.js';
import { WireError } from '../../src/errors.js';

describe('envelope rules', () => {
  const req = (o: unknown) => parseRequest(Buffer.from(JSON.stringify(o)), true);

  it('keeps the payload as the exact request bytes', () => {
    const raw = Buffer.from('{"route":{"actors":["a"]},"payload": {"b":  1.50}}');
    const e = parseRequest(raw, true);
    assert.equal(e.payload.toString(), '{"b":  1.50}');
    assert.equal(e.route.current, 0);
  });

  it('route rule', () => {
    const input = { actors: ['a', 'b', 'c'], current: 1 };
    assert.equal(routeProblem(input, { actors: ['a', 'b'], current: 2 }), null);
    assert.equal(routeProblem(input, { actors: ['a', 'b', 'x', 'y'], current: 1 }), null);
    assert.match(routeProblem(input, { actors: ['a'], current: 0 }) ?? '', /erased/);
    assert.match(routeProblem(input, { actors: ['z', 'b'], current: 1 }) ?? '', /already-processed actor was modified/);
    assert.match(routeProblem(input, { actors: ['a', 'z'], current: 1 }) ?? '', /current actor changed/);
    // end of route: everything is processed
    assert.match(routeProblem({ actors: ['a'], current: 1 }, { actors: ['b'], current: 1 }) ?? '', /modified/);
  });

  it('payload mode splices raw payload bytes into the response', () => {
    const e = req({ route: { actors: ['a', 'b'], current: 0, metadata: { m: 1 } }, headers: { h: 'x' }, payload: 0 });
    const body = Buffer.concat(payloadModeResponse(e, [Buffer.from('{"r":1}'), Buffer.from('2')])).toString();
    assert.equal(
      body,
      '[{"route":{"actors":["a","b"],"current":1,"metadata":{"m":1}},"headers":{"h":"x"},"payload":{"r":1}},' +
        '{"route":{"actors":["a","b"],"current":1,"metadata":{"m":1}},"headers":{"h":"x"},"payload":2}]',
    );
    assert.equal(Buffer.concat(payloadModeResponse(e, [])).toString(), '[]');
  });

  it('envelope mode validates and names the broken output', () => {
    const e = req({ route: { actors: ['a', 'b'], current: 0 }, payload: 0 });
    const good = Buffer.from('{"route":{"actors":["a","c"],"current":1}}');
    const bad = Buffer.from('{"route":{"actors":["x"],"current":0}}');
    assert.equal(
      Buffer.concat(envelopeModeResponse(e, [[good, Buffer.from('5')]], true)).toString(),
      '[{"route":{"actors":["a","c"],"current":1},"payload":5}]',
    );
    assert.throws(
      () =>
        envelopeModeResponse(
          e,
          [
            [good, Buffer.from('5')],
            [bad, Buffer.from('5')],
          ],
          true,
        ),
      (err: unknown) =>
        err instanceof WireError &&
        err.code === 'processing_error' &&
        /^Invalid output envelope\[1\/2\]/.test(err.message),
    );
    assert.equal(
      Buffer.concat(
        envelopeModeResponse(
          e,
          [
            [Buffer.from('{}'), Buffer.from('1')],
            [bad, null],
          ],
          false,
        ),
      ).toString(),
      '[{"payload":1},{"route":{"actors":["x"],"current":0}}]',
    );
  });
});
