import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  asError,
  bytesRead,
  env,
  rawExchange,
  runToExit,
  startRuntime,
  tempDir,
  until,
  waitForFile,
} from './helpers.js';

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

describe('readiness', () => {
  it('the ready file appears only after a slow __init__, while the socket already accepts and queues', async () => {
    const rt = await startRuntime({
      handler: 'classes.SlowInit.process',
      env: { SLOW_INIT_SECONDS: '2' },
      waitReady: false,
    });
    try {
      const started = Date.now();
      // When the ready file first appears, from now on (polled, as the kubelet's probe does).
      const readyAt = until('the ready file', () => rt.isReady() && Date.now(), 30_000);
      readyAt.catch(() => undefined); // awaited below; a test failing before then leaves it unawaited
      await waitForFile(rt.socketPath, 'the socket');
      await rt.waitForHandlerLine('__init__ for 2 s');
      assert.equal(rt.isReady(), false, 'not ready during __init__');
      const early = rt.send(env({})); // connects during __init__: queued, answered once loaded
      const answer = (await early) as Array<{ payload: { pid: number } }>;
      assert.equal(typeof answer[0]?.payload.pid, 'number');
      assert.ok(Date.now() - started >= 1900);
      assert.ok((await readyAt) - started >= 1900, `ready ${(await readyAt) - started} ms in, during a 2 s __init__`);
      assert.equal(rt.isReady(), true);
    } finally {
      await rt.stop();
    }
  });

  it('a stale ready file from an earlier run is removed at start', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'runtime-ready'), 'stale');
    const result = await runToExit({ handler: 'no_such_module.f', env: { ASYA_SOCKET_DIR: dir } });
    assert.equal(result.code, 4);
    assert.equal(fs.existsSync(path.join(dir, 'runtime-ready')), false);
    assert.equal(
      fs.existsSync(path.join(dir, 'asya-runtime.sock')),
      false,
      'no socket left behind after a load failure',
    );
    fs.rmSync(dir, { recursive: true });
  });
});

describe('socket', () => {
  it('creates a missing socket directory, chmods 0o666 by default', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      assert.equal(mode(rt.socketPath), 0o666);
      assert.ok(fs.statSync(rt.socketPath).isSocket());
    } finally {
      await rt.stop();
    }
  });

  it('accepts chmod as 0o660, 0660 and 660; empty leaves the mode as created', async () => {
    for (const [value, expected] of [
      ['0o660', 0o660],
      ['0660', 0o660],
      ['640', 0o640],
    ] as const) {
      const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_CHMOD: value } });
      assert.equal(mode(rt.socketPath), expected, value);
      await rt.stop();
    }
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_CHMOD: '' } });
    assert.equal(mode(rt.socketPath), 0o777 & ~process.umask() & 0o777, 'mode as created (umask applies)');
    await rt.stop();
  });

  it('replaces a stale socket file, refuses a live one, a directory, a regular file', async () => {
    const dir = tempDir();
    const sock = path.join(dir, 'asya-runtime.sock');
    // a stale socket: bound, then the process went away without unlinking it (Node's own close unlinks)
    execFileSync('python3', [
      '-c',
      'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); s.close()',
      sock,
    ]);
    assert.ok(fs.existsSync(sock));
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
    try {
      assert.deepEqual(((await rt.send(env(1))) as Array<{ payload: unknown }>)[0]?.payload, 1);
      const second = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
      assert.equal(second.code, 5);
      assert.match(second.logs.find((l) => l.level === 'fatal')?.msg ?? '', /another process is already listening on/);
      assert.ok(fs.existsSync(sock), 'the refused runtime left the live socket alone');
      assert.deepEqual(
        ((await rt.send(env(2))) as Array<{ payload: unknown }>)[0]?.payload,
        2,
        'the first runtime is undisturbed',
      );
    } finally {
      await rt.stop();
    }

    fs.mkdirSync(sock, { recursive: true });
    const isDir = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
    assert.equal(isDir.code, 5);
    assert.match(isDir.logs.find((l) => l.level === 'fatal')?.msg ?? '', /socket path .* is a directory/);
    fs.rmSync(sock, { recursive: true });
    fs.writeFileSync(sock, 'not a socket');
    const isFile = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
    assert.equal(isFile.code, 5);
    assert.match(isFile.logs.find((l) => l.level === 'fatal')?.msg ?? '', /exists and is not a socket/);
    fs.rmSync(dir, { recursive: true });
  });

  it('legacy ASYA_SOCKET_PATH wins over dir and name; the ready file sits beside it', async () => {
    const dir = tempDir();
    const sockPath = path.join(dir, 'legacy', 'app.sock');
    const rt = await startRuntime({
      handler: 'basic.echo',
      env: { ASYA_SOCKET_PATH: sockPath, ASYA_SOCKET_NAME: 'other.sock' },
    });
    try {
      assert.equal(rt.socketPath, sockPath);
      assert.ok(fs.existsSync(path.join(dir, 'legacy', 'runtime-ready')));
      assert.deepEqual(((await rt.send(env('x'))) as Array<{ payload: unknown }>)[0]?.payload, 'x');
    } finally {
      await rt.stop();
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('answers a burst of 50 simultaneous clients, none refused or lost', async () => {
    const rt = await startRuntime({ handler: 'classes.Counter.process' });
    try {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => rt.send(env({ i }))));
      const counts = answers
        .map((a) => (a as Array<{ payload: { count: number } }>)[0]?.payload.count)
        .sort((a, b) => (a ?? 0) - (b ?? 0));
      assert.deepEqual(
        counts,
        Array.from({ length: 50 }, (_, i) => i + 1),
        'each message handled exactly once, one at a time',
      );
    } finally {
      await rt.stop();
    }
  });
});

describe('signals', () => {
  it('SIGTERM: removes socket and ready file, exits 0', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    const dir = path.dirname(rt.socketPath);
    rt.child.kill('SIGTERM');
    const { code } = await rt.exited;
    assert.equal(code, 0);
    assert.deepEqual(fs.readdirSync(dir), []);
    await rt.stop();
  });

  for (const preload of [false, true]) {
    it(`SIGTERM, then the only worker dies with messages queued: only its message is answered (worker_crashed), the queued ones are closed unanswered at once, never run${preload ? ' (ASYA_PRELOAD)' : ''}`, async () => {
      const rt = await startRuntime({
        handler: 'crash.crash_after',
        env: preload ? { ASYA_PRELOAD: 'true' } : {},
      });
      const first = rt.send(env({ n: 0, s: 1, crash: true }));
      await rt.waitForHandlerLine('running 0');
      const pid = rt.child.pid!;
      const bodies = Array.from({ length: 5 }, (_, i) => Buffer.from(JSON.stringify(env({ n: i + 1 }))));
      const before = bytesRead(pid);
      const queued = bodies.map((body) => rawExchange(rt.socketPath, body));
      // Queued behind the crashing call before the signal: the runtime has read all five requests.
      const total = bodies.reduce((n, b) => n + 4 + b.length, 0);
      await until('the 5 requests read by the runtime', () => bytesRead(pid) >= before + total);
      rt.child.kill('SIGTERM');
      const signalled = Date.now();
      assert.equal(asError(await first).error, 'worker_crashed');
      const answers = await Promise.all(queued);
      assert.deepEqual(
        answers.map((a) => (a === null ? null : a.toString())),
        [null, null, null, null, null],
        "queued messages are closed without an answer (redelivered), never answered with the dead worker's error",
      );
      assert.ok(!rt.logs.some((l) => l.msg === 'running 1'), 'a queued message ran');
      const { code } = await rt.exited;
      assert.equal(code, 0);
      // Well inside ASYA_SHUTDOWN_TIMEOUT (25 s): nothing is left that could take them.
      assert.ok(Date.now() - signalled < 10_000, `stopped ${Date.now() - signalled} ms after SIGTERM`);
      await rt.stop();
    });
  }

  it('SIGTERM with a message in flight: its answer arrives, then exit 0, files gone', async () => {
    const rt = await startRuntime({ handler: 'basic.sleep' });
    const dir = path.dirname(rt.socketPath);
    const inFlight = rt.send(env({ s: 1.5 }));
    await rt.waitForHandlerLine('sleeping 1.5 s');
    rt.child.kill('SIGTERM');
    await until('the ready file withdrawn at once (within 1 s)', () => !rt.isReady(), 1000);
    assert.deepEqual(((await inFlight) as Array<{ payload: unknown }>)[0]?.payload, { slept: 1.5 });
    const { code } = await rt.exited;
    assert.equal(code, 0);
    assert.deepEqual(fs.readdirSync(dir), []);
    await rt.stop();
  });

  it('SIGINT behaves like SIGTERM', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    rt.child.kill('SIGINT');
    assert.equal((await rt.exited).code, 0);
    await rt.stop();
  });

  it('SIGTERM during a slow __init__ exits cleanly without ever becoming ready', async () => {
    const rt = await startRuntime({
      handler: 'classes.SlowInit.process',
      env: { SLOW_INIT_SECONDS: '30' },
      waitReady: false,
    });
    await waitForFile(rt.socketPath, 'the socket');
    await rt.waitForHandlerLine('__init__ for 30 s');
    rt.child.kill('SIGTERM');
    const { code } = await rt.exited;
    assert.equal(code, 0);
    assert.equal(rt.isReady(), false);
    await rt.stop();
  });

  it('an error answer never stops the runtime: mixed good and bad messages', async () => {
    const rt = await startRuntime({ handler: 'basic.raise_value' });
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal(asError(await rt.send(env({}))).error, 'processing_error');
        assert.equal(asError(await rt.sendRaw(Buffer.from('{'))).error, 'msg_parsing_error');
      }
    } finally {
      await rt.stop();
    }
  });
});
