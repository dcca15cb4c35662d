/**
 * tiering.ts. Which flags, for which V8, and whose flags win: pure. On the real runtime (Node 20's V8 11,
 * the one it is for): once ready, the per-message path is optimised within its first few hundred messages
 * (V8's --trace-opt, which prints to stdout), where V8's own tiering, restored the way an operator would
 * (`node --interrupt-budget=... --minimum-invocations-after-ic-update=...`), leaves it as bytecode.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tieringFlags } from '../src/runtime/tiering.js';
import { env, quietFor, type Runtime, startRuntime } from './helpers.js';

/** Functions that run once per message, each in a different module of the path. */
const HOT_PATH = ['parseRequest', 'payloadModeResponse', 'respond'];
/** V8's defaults optimise none of them in this many messages. */
const UNTUNED_MESSAGES = 400;
/**
 * The tuned path is optimised within a few hundred messages on a quiet machine. On a busy one V8 may drop a
 * function it marked (its queue of concurrent compilations is full) and mark it again some calls later,
 * so the messages go on until all are optimised, up to this many.
 */
const TUNED_MESSAGES_AT_MOST = 2000;

/** Which of HOT_PATH V8 has finished optimising since `from` in the runtime's stdout. */
function optimised(rt: Runtime, from: number): string[] {
  const trace = rt.stdoutText.slice(from);
  return HOT_PATH.filter((name) => new RegExp(`completed optimizing [^\\n]*<JSFunction ${name} `).test(trace));
}

async function sendSmall(rt: Runtime, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await rt.send(env({ text: 'x'.repeat(60), i }));
}

describe('tiering', () => {
  it('sets its flags for V8 11 only, each unless the operator gave it (either spelling)', () => {
    const both = ['--interrupt-budget=8000', '--minimum-invocations-after-ic-update=50'];
    assert.deepEqual(tieringFlags('11.3.244.8-node.38', []), both);
    assert.deepEqual(tieringFlags('11.3.244.8-node.38', ['--trace-opt']), both);
    assert.deepEqual(tieringFlags('11.3.244.8-node.38', ['--interrupt_budget=100']), [both[1]]);
    assert.deepEqual(
      tieringFlags('11.3.244.8-node.38', ['--minimum-invocations-after-ic-update', '--interrupt-budget=1']),
      [],
    );
    // Node 24's V8 has no --interrupt-budget (V8 prints an error for it) and tiers up through Maglev.
    assert.deepEqual(tieringFlags('13.6.233.17-node.53', []), []);
    assert.deepEqual(tieringFlags('12.4.254.21-node.33', []), []);
  });

  it('the per-message path is optimised within its first few hundred messages; an operator’s flags win', async (t) => {
    if (!process.versions.v8.startsWith('11.')) {
      t.skip(`V8 ${process.versions.v8}: the runtime keeps V8's own tiering there`);
      return;
    }
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

      await tuned.waitForLog((l) => l.msg.startsWith('started in'));
      const from = tuned.stdoutText.length;
      let sent = 0;
      while (optimised(tuned, from).length < HOT_PATH.length && sent < TUNED_MESSAGES_AT_MOST) {
        await sendSmall(tuned, 50);
        sent += 50;
      }

      await v8Default.waitForLog((l) => l.msg.startsWith('started in'));
      const defaultFrom = v8Default.stdoutText.length;
      await sendSmall(v8Default, UNTUNED_MESSAGES);
      await quietFor(500, 'a negative: time for a compilation already under way to finish and be counted');
      const untuned = optimised(v8Default, defaultFrom);

      t.diagnostic(
        `tuned: [${optimised(tuned, from)}] optimised after ${sent} messages; V8's defaults: [${untuned}] after ${UNTUNED_MESSAGES}`,
      );
      assert.deepEqual(optimised(tuned, from), HOT_PATH, `after ${sent} messages`);
      assert.deepEqual(untuned, []);
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
