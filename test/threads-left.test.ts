/**
 * A handler that leaves threads running (daemon or not, blocked in sleep, on a lock or in a C call)
 * does not hold up a stop: after SIGTERM with nothing in flight, close() runs, the Python process ends
 * at once, the runtime exits 0 and nothing is left (issue #26, item 1). Generated cases, seeded, in
 * spawn mode and with ASYA_PRELOAD.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { env, processesWithEnv, seeded, startRuntime, tempDir } from './helpers.js';

const { seed, next } = seeded();
const KINDS = ['sleep', 'lock', 'select'] as const;

describe(`threads left behind do not hold up a stop (seed ${seed})`, () => {
  for (let i = 0; i < 4; i++) {
    const threads = Array.from({ length: 1 + next(6) }, () => ({ kind: KINDS[next(3)]!, daemon: next(2) === 1 }));
    const preload = i % 2 === 1;
    it(`${threads.map((t) => `${t.kind}${t.daemon ? '/daemon' : ''}`).join(', ')}${preload ? ' (ASYA_PRELOAD)' : ''}`, async () => {
      const tag = randomUUID();
      const dir = tempDir();
      const mark = path.join(dir, 'closed');
      const rt = await startRuntime({
        handler: 'threads.WithClose.process',
        env: { THREADS_TAG: tag, THREADS_CLOSE_MARK: mark, ...(preload ? { ASYA_PRELOAD: 'true' } : {}) },
      });
      const [answer] = (await rt.send(env({ threads }))) as Array<{ payload: { pid: number; alive: number } }>;
      assert.equal(answer?.payload.alive, threads.length, `seed ${seed}: the threads run`);
      const stopping = Date.now();
      rt.child.kill('SIGTERM');
      const { code } = await rt.exited;
      const ms = Date.now() - stopping;
      // ASYA_SHUTDOWN_TIMEOUT is 25 s: a stop that waited for the threads would take that long.
      assert.ok(ms < 5000, `seed ${seed}: stopped in ${ms} ms`);
      assert.equal(code, 0, `seed ${seed}`);
      // Once in the worker that served (with ASYA_PRELOAD, once in the spare too).
      const closed = fs.readFileSync(mark, 'utf8').split('\n').filter(Boolean);
      assert.equal(
        closed.filter((l) => l === `closed ${answer?.payload.pid}`).length,
        1,
        `close() ran once: ${closed}`,
      );
      assert.equal(new Set(closed).size, closed.length);
      const printed = rt.logs.find((l) => l.msg === `closing ${answer?.payload.pid}`);
      assert.ok(printed, 'what close() printed is logged');
      assert.equal(printed.id, undefined, "and names no message (it was the last message's id)");
      assert.deepEqual(processesWithEnv('THREADS_TAG', tag), [], `seed ${seed}: nothing left`);
      fs.rmSync(rt.dir, { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
});
