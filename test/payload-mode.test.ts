import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { asError, env, type Runtime, startRuntime } from './helpers.js';

/** One runtime per handler, started lazily and shared by the tests that use it. */
const runtimes = new Map<string, Promise<Runtime>>();
function rt(handler: string, extraEnv: Record<string, string> = {}): Promise<Runtime> {
  const key = `${handler} ${JSON.stringify(extraEnv)}`;
  let p = runtimes.get(key);
  if (!p) {
    p = startRuntime({ handler, env: extraEnv });
    runtimes.set(key, p);
  }
  return p;
}
after(async () => {
  for (const p of runtimes.values()) await (await p).stop();
});

describe('payload mode', () => {
  it('wraps the result in one envelope: route.current + 1, headers copied, unknown route fields kept', async () => {
    const r = await rt('basic.echo');
    const answer = await r.send({
      id: 'x1',
      parent_id: 'p0',
      route: { actors: ['a', 'b', 'c'], current: 1, metadata: { job: 7 } },
      headers: { trace_id: 'abc' },
      payload: { k: 'v' },
    });
    assert.deepEqual(answer, [
      {
        route: { actors: ['a', 'b', 'c'], current: 2, metadata: { job: 7 } },
        headers: { trace_id: 'abc' },
        payload: { k: 'v' },
      },
    ]);
  });

  it('omits headers when the input had none, and treats a missing current as 0', async () => {
    const r = await rt('basic.echo');
    const answer = await r.send({ route: { actors: ['a', 'b'] }, payload: [1, 2] });
    // a list payload echoed back is a fan-out of its items
    assert.deepEqual(answer, [
      { route: { actors: ['a', 'b'], current: 1 }, payload: 1 },
      { route: { actors: ['a', 'b'], current: 1 }, payload: 2 },
    ]);
  });

  it('passes any JSON value as the payload, null included', async () => {
    const r = await rt('basic.length');
    assert.deepEqual(await r.send(env('abcd')), [
      { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: { len: 4 } },
    ]);
    const none = asError(await r.send(env(null)));
    assert.equal(none.error, 'processing_error');
    assert.equal(none.details.type, 'TypeError');
  });

  it('returns scalars and strings as one envelope', async () => {
    assert.deepEqual(((await (await rt('basic.scalar')).send(env({}))) as Array<{ payload: unknown }>)[0]?.payload, 42);
    assert.deepEqual(
      ((await (await rt('basic.text')).send(env({}))) as Array<{ payload: unknown }>)[0]?.payload,
      'just a string',
    );
  });

  it('fans out a list and a tuple', async () => {
    const answer = (await (await rt('basic.fanout')).send(env({ n: 3 }, { headers: { h: 1 } }))) as Array<
      Record<string, unknown>
    >;
    assert.equal(answer.length, 3);
    for (const [i, e] of answer.entries()) {
      assert.deepEqual(e, { route: { actors: ['a', 'b', 'c'], current: 1 }, headers: { h: 1 }, payload: { i } });
    }
    const tuple = (await (await rt('basic.fanout_tuple')).send(env({}))) as Array<{ payload: unknown }>;
    assert.deepEqual(
      tuple.map((e) => e.payload),
      [{ t: 1 }, { t: 2 }],
    );
  });

  it('aborts on None and on []', async () => {
    assert.deepEqual(await (await rt('basic.abort_none')).send(env({})), []);
    assert.deepEqual(await (await rt('basic.abort_empty')).send(env({})), []);
  });

  it('answers a raised exception with processing_error, type, message and full traceback', async () => {
    const r = await rt('basic.raise_value');
    const e = asError(await r.send(env({})));
    assert.equal(e.error, 'processing_error');
    assert.equal(e.details.message, 'Invalid input');
    assert.equal(e.details.type, 'ValueError');
    assert.match(e.details.traceback, /^Traceback \(most recent call last\):\n/);
    assert.match(e.details.traceback, /basic\.py", line \d+, in raise_value/);
    assert.match(e.details.traceback, /ValueError: Invalid input\n$/);
    // the runtime keeps serving
    assert.equal(asError(await r.send(env({}))).details.message, 'Invalid input');
  });

  it('answers MemoryError and sys.exit() from a handler, then serves the next message', async () => {
    const mem = asError(await (await rt('basic.raise_memory')).send(env({})));
    assert.equal(mem.details.type, 'MemoryError');
    const r = await rt('basic.call_exit');
    const exit = asError(await r.send(env({})));
    assert.equal(exit.error, 'processing_error');
    assert.equal(exit.details.type, 'SystemExit');
    assert.equal(exit.details.message, '3');
    assert.equal(asError(await r.send(env({}))).details.type, 'SystemExit');
  });

  it('answers an unencodable result with processing_error naming the type', async () => {
    const e = asError(await (await rt('basic.unencodable')).send(env({})));
    assert.equal(e.error, 'processing_error');
    assert.equal(e.details.type, 'TypeError');
    assert.match(e.details.message, /object is not JSON serializable/);
  });

  it('never puts NaN or Infinity on the wire: they become null', async () => {
    const r = await rt('basic.nan');
    const raw = await r.send(env({}));
    assert.deepEqual((raw as Array<{ payload: unknown }>)[0]?.payload, { nan: null, list: [null, 1.5, null], ok: 2.0 });
  });

  it('encodes non-string keys as JSON strings', async () => {
    const answer = (await (await rt('basic.nonstr_keys')).send(env({}))) as Array<{ payload: unknown }>;
    assert.deepEqual(answer[0]?.payload, { '1': 'int', '2.5': 'float', false: 'bool', null: 'none' });
  });

  it('sends print, os.write(1), C printf and stderr to the logs, never into the channel', async () => {
    const r = await rt('basic.printer');
    const answer = (await r.send(env({}))) as Array<{ payload: unknown }>;
    assert.deepEqual(answer[0]?.payload, { printed: true });
    for (const text of ['hello from print', 'hello from os.write', 'hello from printf', 'hello from stderr']) {
      const line = await r.waitForLog((l) => l.msg === text);
      assert.equal(line.src, 'handler');
    }
    assert.deepEqual(((await r.send(env({}))) as Array<{ payload: unknown }>)[0]?.payload, { printed: true });
  });

  it('gives the handler an empty stdin, not the channel', async () => {
    const answer = (await (await rt('basic.read_stdin')).send(env({}))) as Array<{ payload: unknown }>;
    assert.deepEqual(answer[0]?.payload, { stdin: '' });
  });

  it('carries 10 MiB payloads in and out', async () => {
    const size = 10 * 1024 * 1024;
    const big = await rt('basic.big');
    const out = (await big.send(env({ size }))) as Array<{ payload: string }>;
    assert.equal(out[0]?.payload.length, size);
    assert.ok(/^x+$/.test(out[0]?.payload ?? ''));
    const echo = await rt('basic.echo');
    const payload = { text: 'é€'.repeat(size / 5), floats: Array.from({ length: 1000 }, (_, i) => i / 7) };
    const back = (await echo.send(env(payload))) as Array<{ payload: unknown }>;
    assert.deepEqual(back[0]?.payload, payload);
  });

  it('never logs payload contents at INFO', async () => {
    const r = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'INFO' } });
    try {
      await r.send(env({ secret: 'do-not-log-me' }));
      await r.send(env({ secret: 'do-not-log-me' }, { route: 'bad' }));
      assert.ok(!r.stderrText.join('\n').includes('do-not-log-me'));
      assert.ok(r.logs.every((l) => l.level !== 'debug'));
    } finally {
      await r.stop();
    }
  });
});
