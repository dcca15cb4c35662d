/**
 * tiering.ts, on the real runtime: once it is ready, the per-message path is optimised within the first
 * few hundred messages (V8's --trace-opt, which prints to stdout), where V8's own tiering, restored the
 * way an operator would (`node --interrupt-budget=... --minimum-invocations-after-ic-update=...`),
 * leaves it as bytecode for thousands.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { env, quietFor, type Runtime, startRuntime, until } from './helpers.js';

/** Functions that run once per message, each in a different module of the path. */
const HOT_PATH = ['parseRequest', 'payloadModeResponse', 'respond'];
const MESSAGES = 400;

/**
 * Which of HOT_PATH V8 optimised for the MESSAGES small messages the runtime handled: compiled on a
 * background thread, so on a busy machine the last may finish after the last answer (`settle`).
 */
async function optimisedOver(rt: Runtime, settle: (optimised: () => string[]) => Promise<unknown>): Promise<string[]> {
  await rt.waitForLog((l) => l.msg.startsWith('started in'));
  const before = rt.stdoutText.length;
  for (let i = 0; i < MESSAGES; i++) await rt.send(env({ text: 'x'.repeat(60), i }));
  const optimised = () => {
    const trace = rt.stdoutText.slice(before);
    return HOT_PATH.filter((name) => new RegExp(`completed optimizing [^\\n]*<JSFunction ${name} `).test(trace));
  };
  await settle(optimised);
  return optimised();
}

describe('tiering', () => {
  it('the per-message path is optimised within its first few hundred messages; an operator’s flags win', async (t) => {
    const tuned = await startRuntime({
      handler: 'basic.echo',
      env: { ASYA_LOG_LEVEL: 'DEBUG' },
      nodeArgs: ['--trace-opt'],
    });
    const v8Default = await startRuntime({
      handler: 'basic.echo',
      env: { ASYA_LOG_LEVEL: 'DEBUG' },
      nodeArgs: ['--trace-opt', '--interrupt-budget=67584', '--minimum-invocations-after-ic-update=500'],
    });
    try {
      const set = await tuned.waitForLog((l) => l.msg === 'V8 tiering set for the per-message path');
      assert.deepEqual(set.flags, ['--interrupt-budget=8000', '--minimum-invocations-after-ic-update=50']);
      const withTiering = await optimisedOver(tuned, (optimised) =>
        until(
          () => `${HOT_PATH} optimised; got ${optimised()}`,
          () => optimised().length === HOT_PATH.length || undefined,
          10_000,
        ).catch(() => undefined),
      );
      // A negative: time for a compilation already under way to finish and be counted against it.
      const without = await optimisedOver(v8Default, () => quietFor(500, 'a compilation already under way'));
      t.diagnostic(`optimised within ${MESSAGES} messages: [${withTiering}] tuned, [${without}] with V8's defaults`);
      assert.deepEqual(withTiering, HOT_PATH);
      // V8's defaults need ~66 KB of a function's bytecode and 500 calls after its last feedback change.
      assert.deepEqual(without, []);
      assert.equal(
        v8Default.logs.find((l) => l.msg === 'V8 tiering set for the per-message path'),
        undefined,
        'the operator set both flags: nothing is applied',
      );
    } finally {
      await Promise.all([tuned.stop(), v8Default.stop()]);
    }
  });
});
