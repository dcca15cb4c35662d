/**
 * The supervisor survives its environment: a log reader that stops reading, clients that leave
 * while their message waits, and a burst of large messages. Real runtime, real Python, real socket.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { asError, env, startRuntime, until } from './helpers.js';

function frame(envelope: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(envelope));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

/** Send a request and close the connection entirely (as a sidecar that gave up does). */
function sendAndLeave(socketPath: string, envelope: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath, () =>
      sock.write(frame(envelope), () => {
        sock.destroy();
        resolve();
      }),
    );
    sock.on('error', reject);
  });
}

/** Send a request, shut down the sending side only (shutdown(SHUT_WR)), and read the answer. */
function sendHalfClosed(socketPath: string, envelope: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(socketPath, () => sock.end(frame(envelope)));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const all = Buffer.concat(chunks);
      if (all.length < 4) return reject(new Error('closed without an answer'));
      resolve(JSON.parse(all.subarray(4).toString()) as unknown);
    });
  });
}

describe('a log reader that stops reading', () => {
  it('keeps answering and enforcing the time limit, drops lines, and says how many once the reader is back', async (t) => {
    const rt = await startRuntime({
      handler: 'ops.chatty',
      env: { ASYA_LOG_LEVEL: 'INFO', ASYA_HANDLER_TIMEOUT: '1' },
    });
    try {
      rt.child.stderr!.pause(); // nobody reads the runtime's stderr any more
      const started = Date.now();
      for (let i = 0; i < 600; i++) {
        const answer = (await rt.send(env({ lines: 10 }), 10_000)) as Array<{ payload: unknown }>;
        assert.deepEqual(answer[0]?.payload, { ok: true }, `message ${i}`);
      }
      const served = Date.now() - started;
      const limited = Date.now();
      assert.equal(asError(await rt.send(env({ sleep: 30 }), 15_000)).error, 'handler_timeout');
      const limitMs = Date.now() - limited;
      assert.ok(limitMs < 5_000, `the 1 s time limit fired after ${limitMs} ms`);
      // the restarted Python process serves too, still without a reader
      assert.deepEqual(((await rt.send(env({ lines: 10 }), 20_000)) as Array<{ payload: unknown }>)[0]?.payload, {
        ok: true,
      });
      const stalledLines = rt.stderrText.length;
      rt.child.stderr!.resume();
      const report = await rt.waitForLog((l) => typeof l.dropped_lines === 'number');
      t.diagnostic(
        `600 messages (20 log lines each) in ${served} ms with stderr unread; time limit after ${limitMs} ms; ${String(report.dropped_lines)} lines dropped; ${stalledLines} lines read before the stall`,
      );
      assert.equal(report.level, 'warn');
      assert.ok((report.dropped_lines as number) > 1000, `${String(report.dropped_lines)} lines dropped`);
      // and logging goes on normally afterwards
      await rt.send(env({ lines: 1 }));
      await rt.waitForLog(
        (l) => l.msg.startsWith('chatty stderr line 0') && rt.logs.indexOf(l) > rt.logs.indexOf(report),
      );
    } finally {
      rt.child.stderr!.resume(); // a runtime that blocked on its stderr (the bug) could not even stop
      await rt.stop();
    }
  });
});

describe('clients that leave', () => {
  it('messages whose client closed its connection while they waited never reach the handler', async () => {
    const rt = await startRuntime({ handler: 'ops.counted', env: { ASYA_LOG_LEVEL: 'INFO' } });
    try {
      const slow = rt.send(env({ sleep: 1.5 }));
      await rt.waitForHandlerLine('call 1 started');
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => sendAndLeave(rt.socketPath, env({ sleep: 0.5 }, { id: `gone-${i}` }))),
      );
      assert.deepEqual(((await slow) as Array<{ payload: unknown }>)[0]?.payload, { calls: 1 });
      const fresh = Date.now();
      const answer = (await rt.send(env({}))) as Array<{ payload: unknown }>;
      assert.deepEqual(answer[0]?.payload, { calls: 2 }, 'the handler ran only for the slow message and this one');
      assert.ok(Date.now() - fresh < 2_500, `a fresh client waited ${Date.now() - fresh} ms`);
      const drops = rt.logs.filter((l) => typeof l.dropped === 'number' && Array.isArray(l.ids));
      assert.equal(
        drops.reduce((n, l) => n + (l.dropped as number), 0),
        20,
      );
      assert.ok(drops.every((l) => l.level === 'warn'));
    } finally {
      await rt.stop();
    }
  });

  it('a client that only shut down its sending side still gets its answer', async () => {
    const rt = await startRuntime({ handler: 'ops.counted', env: { ASYA_LOG_LEVEL: 'INFO' } });
    try {
      const slow = rt.send(env({ sleep: 1 }));
      await rt.waitForHandlerLine('call 1 started');
      const queued = sendHalfClosed(rt.socketPath, env({}, { id: 'half-queued' }));
      assert.deepEqual(((await slow) as Array<{ payload: unknown }>)[0]?.payload, { calls: 1 });
      assert.deepEqual(((await queued) as Array<{ payload: unknown }>)[0]?.payload, { calls: 2 });
      assert.deepEqual(((await sendHalfClosed(rt.socketPath, env({}))) as Array<{ payload: unknown }>)[0]?.payload, {
        calls: 3,
      });
      assert.equal(rt.logs.filter((l) => typeof l.dropped === 'number').length, 0);
    } finally {
      await rt.stop();
    }
  });
});

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

function exchangeBytes(socketPath: string, bytes: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const sock = net.connect(socketPath, () => sock.write(bytes));
    sock.on('data', (c: Buffer) => (got += c.length));
    sock.on('error', reject);
    sock.on('close', () => resolve(got));
  });
}

// The bound, not a return to idle: src/socket/intake.ts keeps the requests held at once to 64 MiB (the
// rest wait in the kernel), so the peak and what glibc keeps afterwards no longer grow with the burst.
// Measured on the 2-core VM: 40 and 80 clients x 10 MB both peak at ~235 MiB and settle at idle + ~165 MiB
// (glibc keeps freed memory for the next large message, see src/runtime/heap.ts). Before: 744 and 1178 MiB.
describe('memory after a burst', { skip: process.platform !== 'linux' }, () => {
  it('twenty 10 MB messages back to back: within 10 s the supervisor holds at most its idle memory + 100 MiB', async (t) => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      const pid = rt.child.pid!;
      await rt.send(env('warm'));
      const idle = rssMiB(pid);
      const message = frame(env({ text: 'x'.repeat(10_000_000) }));
      let peak = idle;
      for (let i = 0; i < 20; i++) {
        assert.ok((await exchangeBytes(rt.socketPath, message)) > 10_000_000, `message ${i} answered`);
        peak = Math.max(peak, rssMiB(pid));
      }
      const done = Date.now();
      // Measured ~+70 MiB at once (docs/performance.md, "Memory after a burst"); +90 to +120 for good before.
      let now = rssMiB(pid);
      await until(
        () => `RSS under idle + 100 MiB within 10 s: at ${now.toFixed(0)} MiB (idle ${idle.toFixed(0)})`,
        () => {
          now = rssMiB(pid);
          return now <= idle + 100;
        },
        10_000,
        100,
      );
      t.diagnostic(
        `supervisor RSS: idle ${idle.toFixed(0)} MiB, peak ${peak.toFixed(0)}, ${now.toFixed(0)} after ${Date.now() - done} ms`,
      );
    } finally {
      await rt.stop();
    }
  });

  it('bursts of 40 and 80 clients x 10 MB: the supervisor peaks and settles within a bound that does not grow with the burst', async (t) => {
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'INFO' } });
    try {
      const pid = rt.child.pid!;
      await rt.send(env('warm')); // idle after one message served: the first one's allocations are made
      const idle = rssMiB(pid);
      const message = frame(env({ text: 'x'.repeat(10_000_000) }));
      const figures: string[] = [];
      for (const clients of [40, 80]) {
        let peak = idle;
        const poll = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 50);
        const answers = await Promise.all(Array.from({ length: clients }, () => exchangeBytes(rt.socketPath, message)));
        clearInterval(poll);
        assert.ok(
          answers.every((n) => n > 10_000_000),
          'every client got its answer',
        );
        // Quiet figures ~235 MiB and idle + ~165 MiB; generous bounds, the same for both bursts
        assert.ok(peak < idle + 450, `${clients} clients: peak ${peak.toFixed(0)} MiB (idle ${idle.toFixed(0)})`);
        // The idle collection runs after 2 s without messages: wait for the memory to come under the bound
        // (at once when the peak already is), not for a fixed 4 s.
        let settled = rssMiB(pid);
        await until(
          () => `${clients} clients: RSS under idle + 300 MiB; at ${settled.toFixed(0)} MiB (idle ${idle.toFixed(0)})`,
          () => {
            settled = rssMiB(pid);
            return settled < idle + 300;
          },
          20_000,
          100,
        );
        figures.push(
          `${clients} clients: peak ${peak.toFixed(0)} MiB, then under the bound at ${settled.toFixed(0)} MiB`,
        );
      }
      t.diagnostic(`supervisor RSS: idle ${idle.toFixed(0)} MiB; ${figures.join('; ')}`);
    } finally {
      await rt.stop();
    }
  });
});
