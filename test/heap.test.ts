/**
 * heap.ts: the supervisor keeps freed memory, so a stream of large messages stops costing page
 * faults once the first has been through. Measured on the real runtime by its own fault counter,
 * against the same runtime with the tuning switched off (GLIBC_TUNABLES set: the operator's wins).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { type Runtime, env, startRuntime } from './helpers.js';

function minorFaults(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[7]);
}

/** Page faults of the supervisor per 1 MB message, after a few to warm up. */
async function faultsPerMessage(rt: Runtime): Promise<number> {
  const message = env({ text: 'x'.repeat(1_000_000) });
  for (let i = 0; i < 40; i++) await rt.send(message);
  const pid = rt.child.pid!;
  const before = minorFaults(pid);
  for (let i = 0; i < 40; i++) await rt.send(message);
  return (minorFaults(pid) - before) / 40;
}

describe('heap', { skip: process.platform !== 'linux' }, () => {
  it('a stream of 1 MB messages does not fault the supervisor\'s memory in again and again', async (t) => {
    const tuned = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'WARNING' } });
    const plain = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'WARNING', GLIBC_TUNABLES: '' } });
    try {
      const withTuning = await faultsPerMessage(tuned);
      const without = await faultsPerMessage(plain);
      t.diagnostic(`supervisor page faults per 1 MB message: ${withTuning} with the tuning, ${without} without`);
      // 1 MB is 244 pages; without the tuning the supervisor faults in roughly that per message
      assert.ok(withTuning < without / 3, `${withTuning} faults a message with the tuning, ${without} without`);
    } finally {
      await Promise.all([tuned.stop(), plain.stop()]);
    }
  });
});
