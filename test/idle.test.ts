/**
 * An idle runtime costs no CPU: nothing polls while no message comes (the socket directory is watched
 * with inotify, the descriptor budget is checked only under many connections, the dead-buffer check is
 * armed by large messages). Measured from the kernel's per-thread run times (schedstat, nanoseconds).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { env, quietFor, startRuntime } from './helpers.js';

/** CPU time every thread of `pid` has run, in nanoseconds. */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns;
}

describe('an idle runtime', { skip: !fs.existsSync('/proc/self/schedstat') && 'no schedstat' }, () => {
  it('its supervisor spends (almost) no CPU while no message comes, also after large messages', async (t) => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      const pid = rt.child.pid!;
      await rt.send(env({ text: 'x'.repeat(2_000_000) })); // arms the dead-buffer check, which must disarm
      await quietFor(3000, 'the check armed by the large message runs and disarms');
      const before = cpuNs(pid);
      await quietFor(6000, 'the idle window measured');
      const msPerSecond = (cpuNs(pid) - before) / 1e6 / 6;
      t.diagnostic(`supervisor CPU while idle: ${msPerSecond.toFixed(3)} ms/s`);
      // Measured 0.014 ms/s; three timers a second cost 0.46-0.64 ms/s before.
      assert.ok(msPerSecond < 0.15, `the supervisor burned ${msPerSecond.toFixed(3)} ms of CPU a second while idle`);
    } finally {
      await rt.stop();
    }
  });
});
