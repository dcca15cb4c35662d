import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { asError, env, type Runtime, startRuntime, tempDir, until } from './helpers.js';

async function pythonPid(rt: Runtime, after = 0): Promise<number> {
  const lines = () => rt.logs.filter((l) => l.msg === 'handler loaded');
  await rt.waitForLog(() => lines().length > after);
  return lines()[after]?.python_pid as number;
}

function waitReady(rt: Runtime, timeoutMs = 20_000): Promise<true> {
  return until('the ready file again', () => rt.isReady(), timeoutMs);
}

describe('interpreter crashes', () => {
  it('os._exit: the in-flight message gets worker_crashed with the exit code, then the next is served', async () => {
    const rt = await startRuntime({ handler: 'crash.maybe_crash' });
    try {
      const first = await pythonPid(rt);
      const e = asError(await rt.send(env({ crash: true })));
      assert.equal(e.error, 'worker_crashed');
      assert.equal(e.details.exit_code, 1);
      assert.equal(e.details.signal, null);
      assert.match(e.details.message, /exit code 1/);
      const ok = (await rt.send(env({}))) as Array<{ payload: { pid: number } }>;
      assert.notEqual(ok[0]?.payload.pid, first, 'served by a new Python process');
    } finally {
      await rt.stop();
    }
  });

  it('segfault: answered with the signal and the Python traceback from faulthandler', async () => {
    const rt = await startRuntime({ handler: 'crash.segfault' });
    try {
      const e = asError(await rt.send(env({})));
      assert.equal(e.error, 'worker_crashed');
      assert.equal(e.details.signal, 'SIGSEGV');
      assert.match(e.details.traceback, /Fatal Python error: Segmentation fault/);
      assert.match(e.details.traceback, /crash\.py", line \d+ in segfault/);
      await waitReady(rt);
      assert.equal(asError(await rt.send(env({}))).error, 'worker_crashed', 'still answering after repeated crashes');
    } finally {
      await rt.stop();
    }
  });

  it('SIGKILL from outside (as the OOM killer does), mid-message and while idle', async () => {
    const rt = await startRuntime({ handler: 'basic.sleep' });
    try {
      const pid = await pythonPid(rt, 0);
      const inFlight = rt.send(env({ s: 5 }));
      await rt.waitForHandlerLine('sleeping 5 s');
      process.kill(pid, 'SIGKILL');
      const e = asError(await inFlight);
      assert.equal(e.error, 'worker_crashed');
      assert.equal(e.details.signal, 'SIGKILL');
      const pid2 = await pythonPid(rt, 1);
      await waitReady(rt);
      process.kill(pid2, 'SIGKILL'); // idle: nothing to answer, but it must come back
      await pythonPid(rt, 2);
      await waitReady(rt);
      assert.deepEqual(((await rt.send(env({ s: 0 }))) as Array<{ payload: unknown }>)[0]?.payload, { slept: 0 });
    } finally {
      await rt.stop();
    }
  });

  it('readiness is withdrawn during the restart of a class whose __init__ takes 2 s, then restored', async () => {
    const rt = await startRuntime({ handler: 'classes.SlowInit.process', env: { SLOW_INIT_SECONDS: '2' } });
    try {
      const pid = await pythonPid(rt, 0);
      const killed = Date.now();
      process.kill(pid, 'SIGKILL');
      await rt.waitForLog((l) => /Python process died/.test(l.msg));
      // The death is logged, then readiness withdrawn: wait for the withdrawal, not for the line alone.
      await until('the ready file withdrawn while re-initialising', () => !rt.isReady(), 5000);
      // When the ready file comes back, from now on (polled, as the kubelet's probe does).
      const readyAgain = until('the ready file again', () => rt.isReady() && Date.now(), 30_000);
      readyAgain.catch(() => undefined); // awaited below; a test failing before then leaves it unawaited
      const queued = rt.send(env({})); // waits for the new worker, not lost
      const answer = (await queued) as Array<{ payload: { pid: number } }>;
      assert.notEqual(answer[0]?.payload.pid, pid);
      const back = (await readyAgain) - killed;
      assert.ok(back >= 1900, `ready again ${back} ms after the kill, while the new __init__ takes 2 s`);
      assert.equal(rt.isReady(), true);
    } finally {
      await rt.stop();
    }
  });

  it('gives up after repeated failures to re-initialise: exit 6 with the last cause, no ready file', async () => {
    const dir = tempDir();
    const rt = await startRuntime({
      handler: 'crash.FailsAfterFirstStart.process',
      env: { CRASH_MARKER: path.join(dir, 'marker') },
    });
    const e = asError(await rt.send(env({})));
    assert.equal(e.error, 'worker_crashed');
    const { code } = await rt.exited;
    assert.equal(code, 6);
    const fatal = rt.logs.find((l) => l.level === 'fatal');
    assert.match(
      fatal?.msg ?? '',
      /failed to re-initialise 5 times in a row; last cause: cannot load handler .*raised RuntimeError: model file vanished/,
    );
    assert.equal(rt.isReady(), false);
    assert.equal(fs.existsSync(rt.socketPath), false);
    await rt.stop();
    fs.rmSync(dir, { recursive: true });
  });
});

describe('handler time limit', () => {
  it('an overrunning handler is stopped, answered with handler_timeout, and the next message served', async () => {
    const rt = await startRuntime({ handler: 'basic.sleep', env: { ASYA_HANDLER_TIMEOUT: '0.5' } });
    try {
      const started = Date.now();
      const e = asError(await rt.send(env({ s: 30 })));
      assert.equal(e.error, 'handler_timeout');
      assert.equal(e.details.timeout_seconds, 0.5);
      assert.ok(Date.now() - started < 5000, 'answered within a few seconds');
      assert.deepEqual(((await rt.send(env({ s: 0.1 }))) as Array<{ payload: unknown }>)[0]?.payload, { slept: 0.1 });
    } finally {
      await rt.stop();
    }
  });
});

describe('bad clients', () => {
  it('20 idle connections do not delay a real client', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    const idle: net.Socket[] = [];
    try {
      const settled: Array<Promise<void>> = [];
      for (let i = 0; i < 20; i++) {
        const s = net.connect(rt.socketPath);
        s.on('error', () => undefined);
        settled.push(
          new Promise((resolve) =>
            s.on('connect', () => {
              if (i % 2)
                s.write(Buffer.from([0, 0, 1]), () => resolve()); // a trickle: 3 of 4 header bytes
              else resolve();
            }),
          ),
        );
        idle.push(s);
      }
      await Promise.all(settled); // all connected, the trickles' bytes sent
      const started = Date.now();
      assert.deepEqual(((await rt.send(env('hi'))) as Array<{ payload: unknown }>)[0]?.payload, 'hi');
      assert.ok(Date.now() - started < 1000);
    } finally {
      for (const s of idle) s.destroy();
      await rt.stop();
    }
  });

  it('fuzz: hundreds of random and mutated frames are all answered; the runtime still serves', async () => {
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'ERROR', ASYA_READ_TIMEOUT: '1' } });
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const valid = Buffer.from(
      JSON.stringify(env({ text: 'héllo', list: [1, 2.5, null, true], nested: { a: [{}] } }, { headers: { t: 'x' } })),
    );
    try {
      for (let i = 0; i < 400; i++) {
        let body: Buffer;
        const kind = i % 4;
        if (kind === 0) {
          body = Buffer.from(Array.from({ length: rand(64) }, () => rand(256)));
        } else {
          body = Buffer.from(valid);
          for (let k = 0; k <= rand(4); k++) {
            const pos = rand(body.length);
            if (kind === 1) body[pos] = rand(256);
            else if (kind === 2) body = Buffer.concat([body.subarray(0, pos), body.subarray(pos + 1 + rand(8))]);
            else
              body = Buffer.concat([
                body.subarray(0, pos),
                Buffer.from('[{"\\'.charAt(rand(5)) || ']'),
                body.subarray(pos),
              ]);
          }
        }
        // framing itself mutated now and then: a wrong length prefix, then the client half-closes
        const head = Buffer.alloc(4);
        head.writeUInt32BE(i % 25 === 0 ? body.length + rand(50) : body.length);
        const answer = await new Promise<Buffer | null>((resolve) => {
          const s = net.connect(rt.socketPath, () => s.end(Buffer.concat([head, body])));
          const chunks: Buffer[] = [];
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('error', () => undefined);
          s.on('close', () => resolve(chunks.length ? Buffer.concat(chunks) : null));
        });
        assert.ok(answer, `frame ${i} got no answer: ${body.toString('hex')}`);
        const parsed = JSON.parse(answer.subarray(4).toString()) as unknown;
        assert.ok(Array.isArray(parsed), `frame ${i}: answer is not an array`);
      }
      assert.deepEqual(((await rt.send(env('alive'))) as Array<{ payload: unknown }>)[0]?.payload, 'alive');
    } finally {
      await rt.stop();
    }
  });

  it('a client that disconnects before its answer disturbs nothing', async () => {
    const rt = await startRuntime({ handler: 'basic.sleep' });
    try {
      const s = net.connect(rt.socketPath);
      const body = Buffer.from(JSON.stringify(env({ s: 0.5 })));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      s.on('error', () => undefined);
      const closed = new Promise((resolve) => s.on('close', resolve));
      s.on('connect', () => s.write(Buffer.concat([head, body])));
      await rt.waitForHandlerLine('sleeping 0.5 s');
      s.destroy(); // while the handler runs
      await closed;
      assert.deepEqual(((await rt.send(env({ s: 0 }))) as Array<{ payload: unknown }>)[0]?.payload, { slept: 0 });
    } finally {
      await rt.stop();
    }
  });
});

describe('as PID 1', () => {
  const canUnshare = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;
  it('SIGTERM to PID 1 drains the in-flight message, cleans up, exits 0', {
    skip: canUnshare ? false : 'unshare --pid not permitted here',
  }, async () => {
    const rt = await startRuntime({ handler: 'basic.sleep', wrap: ['unshare', '--pid', '--fork', '--mount-proc'] });
    const dir = path.dirname(rt.socketPath);
    const inner = rt.logs.find((l) => l.msg === 'starting Asya runtime');
    assert.equal(inner?.pid, 1, 'the runtime is PID 1 in its namespace');
    const inFlight = rt.send(env({ s: 1 }));
    await rt.waitForHandlerLine('sleeping 1 s');
    // signal PID 1 of the namespace from outside: find it as the child of unshare
    const nodePid = Number(
      spawnSync('pgrep', ['-P', String(rt.child.pid)], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')[0],
    );
    process.kill(nodePid, 'SIGTERM');
    assert.deepEqual(((await inFlight) as Array<{ payload: unknown }>)[0]?.payload, { slept: 1 });
    assert.equal((await rt.exited).code, 0);
    assert.deepEqual(fs.readdirSync(dir), []);
    await rt.stop();
  });
});
