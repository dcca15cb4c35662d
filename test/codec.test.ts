/** ASYA_JSON_CODEC: orjson (when installed) must answer exactly like the stdlib codec. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { env, pyenvPython, rawExchange, runToExit, startRuntime, TEST_VENV_PYTHON } from './helpers.js';

/** Tracebacks may differ by the shim's own codec frames; compare the exception they end with. */
function withoutShimFrames(answer: unknown): unknown {
  return JSON.parse(JSON.stringify(answer), (key, value: unknown) =>
    key === 'traceback' && typeof value === 'string' ? value.trim().split('\n').pop() : value,
  );
}

async function answers(codec: string, handler: string, requests: Buffer[]): Promise<unknown[]> {
  const rt = await startRuntime({ handler, env: { ASYA_PYTHONEXECUTABLE: TEST_VENV_PYTHON, ASYA_JSON_CODEC: codec } });
  try {
    const loaded = await rt.waitForLog((l) => l.msg === 'handler loaded');
    assert.match(String(loaded.codec), codec === 'json' ? /^json$/ : /^orjson \d/);
    const out = [];
    for (const r of requests) out.push(JSON.parse(((await rawExchange(rt.socketPath, r)) as Buffer).toString()));
    return out;
  } finally {
    await rt.stop();
  }
}

const frames = (...objs: unknown[]) => objs.map((o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)));

describe('ASYA_JSON_CODEC', () => {
  it('orjson and json give the same answers for tricky results', async () => {
    const reqs = frames(env({ a: [1, 2.5, 'x', null, true, { é: '\u2603' }] }), env('s'), env(123456789012));
    for (const handler of [
      'codec_handlers.mixed',
      'codec_handlers.dataclass_result',
      'codec_handlers.datetime_result',
    ]) {
      assert.deepEqual(
        withoutShimFrames(await answers('orjson', handler, reqs)),
        withoutShimFrames(await answers('json', handler, reqs)),
        handler,
      );
    }
  });

  it('orjson and json reject the same inputs with the same messages', async () => {
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const reqs = frames(
      '{"route":{"actors":["a"]},"payload":NaN}',
      '{"route":{"actors":["a"]},"payload":[1,,2]}',
      `{"route":{"actors":["a"]},"payload":${deep}}`,
      '{"route":{"actors":["a"]},"payload":"\\ud800"}',
      '{"route":{"actors":["a"]},"payload":1e400}',
    );
    const viaOrjson = await answers('auto', 'codec_handlers.echo', reqs);
    assert.deepEqual(
      withoutShimFrames(viaOrjson),
      withoutShimFrames(await answers('json', 'codec_handlers.echo', reqs)),
    );
    assert.equal((viaOrjson[0] as Array<{ error: string }>)[0]?.error, 'msg_parsing_error');
  });

  const py37 = pyenvPython('3.7');
  it('orjson pinned but not installed is a FATAL load error', {
    skip: py37 ? false : 'no Python 3.7 under pyenv',
  }, async () => {
    const result = await runToExit({
      handler: 'basic.echo',
      env: { ASYA_JSON_CODEC: 'orjson', ASYA_PYTHONEXECUTABLE: py37 as string },
    });
    assert.equal(result.code, 4);
    assert.match(
      result.logs.find((l) => l.level === 'fatal')?.msg ?? '',
      /ASYA_JSON_CODEC=orjson but orjson is not installed for /,
    );
  });
});
