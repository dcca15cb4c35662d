/**
 * The runtime against its environment: a second runtime on its directory, files and directories
 * removed or turned read-only under it, impossible socket paths, huge time limits, signals, and
 * an exhausted descriptor table. Each test checks the end state: serving (a real message answered)
 * or one FATAL line and its exit code; which files exist; how many Python processes are alive.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  connects,
  env,
  fdCount,
  type LogLine,
  listensOnTcp,
  quietFor,
  type Runtime,
  rawExchange,
  runToExit,
  startRuntime,
  tempDir,
  until,
} from './helpers.js';

/**
 * Python shim processes started for this socket directory, wherever they are in the process tree
 * (orphans too). A fork of a shim (Python's own helpers at startup) is not another interpreter.
 */
function shims(socketDir: string): number[] {
  const marker = `ASYA_SOCKET_DIR=${socketDir}\0`;
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes('asya_shim')) continue;
      if (!fs.readFileSync(`/proc/${entry}/environ`, 'latin1').includes(marker)) continue;
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  return [...parents].filter(([, ppid]) => !parents.has(ppid)).map(([pid]) => pid);
}

/** Samples the number of shim processes until stopped; returns the largest count seen. */
function watchShims(socketDir: string): () => number {
  let max = 0;
  const timer = setInterval(() => (max = Math.max(max, shims(socketDir).length)), 25);
  return () => {
    clearInterval(timer);
    return Math.max(max, shims(socketDir).length);
  };
}

const fatals = (logs: LogLine[]) => logs.filter((l) => l.level === 'fatal');

async function served(rt: Runtime, payload: unknown = 'ping'): Promise<void> {
  assert.deepEqual(((await rt.send(env(payload))) as Array<{ payload: unknown }>)[0]?.payload, payload);
}

async function pythonPid(rt: Runtime, nth = 0): Promise<number> {
  await rt.waitForLog(() => rt.logs.filter((l) => l.msg === 'handler loaded').length > nth);
  return rt.logs.filter((l) => l.msg === 'handler loaded')[nth]?.python_pid as number;
}

describe('ownership of the socket directory', () => {
  it('a second runtime on the same directory exits 5 and leaves the first one its socket and ready file', async () => {
    const first = await startRuntime({ handler: 'basic.echo' });
    const dir = path.dirname(first.socketPath);
    try {
      const second = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
      assert.equal(second.code, 5);
      assert.equal(fatals(second.logs).length, 1);
      assert.match(fatals(second.logs)[0]!.msg, /^FATAL: another process is already listening on /);
      assert.ok(first.isReady(), 'the first runtime is still ready');
      assert.ok(fs.statSync(first.socketPath).isSocket());
      await served(first);
      assert.equal(shims(dir).length, 1, 'the second runtime never started Python');
    } finally {
      await first.stop();
    }
  });
});

describe('time limits', () => {
  it('a limit beyond Node timers is refused at startup, naming the variable, the value and the limit', async () => {
    for (const name of ['ASYA_HANDLER_TIMEOUT', 'ASYA_READ_TIMEOUT', 'ASYA_SHUTDOWN_TIMEOUT']) {
      const result = await runToExit({ handler: 'basic.echo', env: { [name]: '2147484' } });
      assert.equal(result.code, 2, name);
      assert.equal(fatals(result.logs).length, 1);
      assert.match(
        fatals(result.logs)[0]!.msg,
        new RegExp(`^FATAL: ${name}="2147484" is not valid: expected a positive number of seconds up to 2147483 `),
      );
    }
  });

  it('the largest accepted limits are honoured: messages are answered, not timed out', async () => {
    const max = '2147483';
    const rt = await startRuntime({
      handler: 'basic.sleep',
      env: { ASYA_HANDLER_TIMEOUT: max, ASYA_READ_TIMEOUT: max, ASYA_SHUTDOWN_TIMEOUT: max },
    });
    try {
      assert.deepEqual(((await rt.send(env({ s: 0.2 }))) as Array<{ payload: unknown }>)[0]?.payload, { slept: 0.2 });
      assert.deepEqual(((await rt.send(env({ s: 0.1 }))) as Array<{ payload: unknown }>)[0]?.payload, { slept: 0.1 });
      assert.equal(rt.logs.filter((l) => String(l.msg).includes('ASYA_HANDLER_TIMEOUT')).length, 0);
    } finally {
      await rt.stop();
    }
  });
});

describe('the socket directory under the running runtime', () => {
  it('read-only during a restart: one FATAL naming the ready file and EROFS, exit 5, no Python left', async () => {
    const rt = await startRuntime({ handler: 'basic.echo', wrap: ['unshare', '-m'] });
    const dir = path.dirname(rt.socketPath);
    const maxShims = watchShims(dir);
    try {
      const pid = await pythonPid(rt);
      // In the runtime's own mount namespace only: the test keeps a writable view of the directory.
      execFileSync('nsenter', [
        '-t',
        String(rt.child.pid),
        '-m',
        '--',
        'sh',
        '-c',
        `mount --bind "${dir}" "${dir}" && mount -o remount,ro,bind "${dir}"`,
      ]);
      process.kill(pid, 'SIGKILL');
      const { code } = await rt.exited;
      assert.equal(code, 5);
      const fatal = fatals(rt.logs);
      assert.equal(fatal.length, 1, rt.stderrText.join('\n'));
      assert.match(fatal[0]!.msg, /^FATAL: cannot remove the ready file .*runtime-ready: EROFS: read-only file system/);
      assert.equal(fatal[0]!.exit_code, 5);
      assert.ok(!rt.stderrText.some((l) => /^\s+at /.test(l)), 'no stack trace');
      assert.equal(
        rt.logs.filter((l) => l.msg === 'handler loaded').length,
        1,
        'no interpreter was started on a directory that cannot be made ready',
      );
      assert.ok(maxShims() <= 1);
      await until('no Python left', () => shims(dir).length === 0, 5000);
      // The files stay (the runtime could not remove them); the next runtime clears them.
      const next = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir }, waitReady: false });
      try {
        await next.waitForLog((l) => l.msg === 'ready: accepting messages');
        await served(next);
      } finally {
        await next.stop();
      }
    } finally {
      rt.child.kill('SIGKILL');
      await rt.stop();
    }
  });

  it('removed while the Python process restarts: one FATAL naming the lost socket, exit 5, the new interpreter stopped', async () => {
    const rt = await startRuntime({ handler: 'classes.SlowInit.process', env: { SLOW_INIT_SECONDS: '1.5' } });
    const dir = path.dirname(rt.socketPath);
    const maxShims = watchShims(dir);
    try {
      const pid = await pythonPid(rt);
      process.kill(pid, 'SIGKILL');
      await until('ready file withdrawn', () => !rt.isReady(), 15_000);
      const inits = () => rt.logs.filter((l) => l.src === 'handler' && l.msg === '__init__ for 1.5 s').length;
      await until('the new interpreter in its __init__', () => inits() === 2, 15_000);
      fs.rmSync(dir, { recursive: true, force: true });
      const { code } = await rt.exited;
      assert.equal(code, 5);
      const fatal = fatals(rt.logs);
      assert.equal(fatal.length, 1, rt.stderrText.join('\n'));
      // rm -r unlinks the socket before its directory: the watch may see the file gone while the
      // directory still stands, and then says only that.
      assert.match(
        fatal[0]!.msg,
        /^FATAL: the socket file .* was removed( \(its directory .* is gone\))?: the sidecar can no longer connect/,
      );
      assert.equal(fs.existsSync(dir), false, 'nothing recreated');
      assert.ok(maxShims() <= 1, 'never two interpreters');
      await until('no Python left', () => shims(dir).length === 0, 5000);
    } finally {
      rt.child.kill('SIGKILL');
      await rt.stop();
    }
  });

  it('a ready file removed by someone else is restored within seconds; the runtime keeps serving', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      fs.rmSync(rt.readyFile);
      await until('ready file restored', () => rt.isReady(), 5000);
      await rt.waitForLog((l) => l.level === 'warn' && /ready file was removed by another process/.test(l.msg));
      await served(rt);
      assert.equal(shims(path.dirname(rt.socketPath)).length, 1);
    } finally {
      await rt.stop();
    }
  });

  it('a socket file removed while ready: FATAL exit 5, the ready file withdrawn, Python stopped', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    const dir = path.dirname(rt.socketPath);
    try {
      fs.rmSync(rt.socketPath);
      const { code } = await rt.exited;
      assert.equal(code, 5);
      assert.equal(fatals(rt.logs).length, 1);
      assert.match(
        fatals(rt.logs)[0]!.msg,
        /^FATAL: the socket file .* was removed: the sidecar can no longer connect/,
      );
      assert.deepEqual(fs.readdirSync(dir), [], 'no ready file claiming readiness for a process that is gone');
      await until('no Python left', () => shims(dir).length === 0, 5000);
    } finally {
      await rt.stop();
    }
  });
});

describe('impossible socket paths are refused at startup', () => {
  it('a path over the 107-byte sun_path limit, counted in UTF-8 bytes, names its variables; 107 bytes work', async () => {
    const base = tempDir();
    const sockName = 'asya-runtime.sock';
    // 'é' is two bytes: this directory is short in characters, long in bytes
    const pad = (bytes: number) => 'é'.repeat(Math.floor(bytes / 2)) + (bytes % 2 ? 'x' : '');
    const dirFor = (total: number) =>
      path.join(base, pad(total - Buffer.byteLength(path.join(base, '/', sockName)) - 1));
    try {
      const long = dirFor(108);
      assert.equal(Buffer.byteLength(path.join(long, sockName)), 108);
      assert.ok(path.join(long, sockName).length < 108);
      const refused = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: long } });
      assert.equal(refused.code, 2);
      assert.equal(fatals(refused.logs).length, 1);
      assert.match(
        fatals(refused.logs)[0]!.msg,
        /^FATAL: socket path .* \(from ASYA_SOCKET_DIR=.* and ASYA_SOCKET_NAME="asya-runtime.sock"\) is 108 bytes long \(UTF-8\); a Unix socket path can have at most 107 bytes/,
      );
      assert.equal(fs.existsSync(long), false, 'nothing created');

      const legacy = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_PATH: path.join(long, sockName) } });
      assert.equal(legacy.code, 2);
      assert.match(fatals(legacy.logs)[0]!.msg, /\(from ASYA_SOCKET_PATH=/);

      const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dirFor(107) } });
      try {
        assert.equal(Buffer.byteLength(rt.socketPath), 107);
        await served(rt);
      } finally {
        await rt.stop();
      }
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });

  it('a socket directory that cannot exist: one FATAL line, exit 5, promptly (no stack trace, no spinning)', async () => {
    for (const [dir, reason] of [
      ['/etc/passwd/x', /\/etc\/passwd exists and is not a directory/],
      ['/dev/null', /\/dev\/null exists and is not a directory/],
      ['/proc/asya', /ENOENT.*\(\/proc does not accept new directories\)/],
    ] as const) {
      const started = Date.now();
      const result = await runToExit({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } }, 15_000);
      assert.equal(result.code, 5, `${dir}: ${result.text}`);
      assert.equal(fatals(result.logs).length, 1);
      assert.match(
        fatals(result.logs)[0]!.msg,
        new RegExp(`^FATAL: cannot create socket directory ${dir}: ${reason.source}`),
      );
      assert.ok(!/^\s+at /m.test(result.text), 'no stack trace');
      assert.ok(Date.now() - started < 10_000, `${dir} took ${Date.now() - started} ms`);
    }
  });
});

describe('signals', () => {
  for (const signal of ['SIGHUP', 'SIGQUIT'] as const) {
    it(`${signal} shuts down as SIGTERM does: exit 0, socket and ready file gone, Python stopped`, async () => {
      const rt = await startRuntime({ handler: 'basic.echo' });
      const dir = path.dirname(rt.socketPath);
      rt.child.kill(signal);
      const { code, signal: killedBy } = await rt.exited;
      assert.equal(killedBy, null);
      assert.equal(code, 0);
      assert.deepEqual(fs.readdirSync(dir), []);
      assert.ok(rt.logs.some((l) => l.msg === 'shutting down' && l.reason === signal));
      await until('no Python left', () => shims(dir).length === 0, 5000);
      await rt.stop();
    });
  }

  it('SIGXCPU and SIGPWR shut down as SIGTERM does; SIGUSR2, SIGALRM, SIGPROF and SIGIO are ignored and the runtime keeps serving', async () => {
    for (const signal of ['SIGXCPU', 'SIGPWR'] as const) {
      const rt = await startRuntime({ handler: 'basic.echo' });
      const dir = path.dirname(rt.socketPath);
      rt.child.kill(signal);
      const { code, signal: killedBy } = await rt.exited;
      assert.equal(killedBy, null, signal);
      assert.equal(code, 0, signal);
      assert.deepEqual(fs.readdirSync(dir), [], signal);
      await rt.stop();
    }
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      for (const signal of ['SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGPROF', 'SIGIO', 'SIGTRAP', 'SIGSYS'] as const) {
        rt.child.kill(signal);
        await rt.waitForLog((l) => l.msg.startsWith(`ignored ${signal}`));
      }
      assert.equal(rt.child.exitCode, null);
      assert.ok(rt.isReady());
      await served(rt);
    } finally {
      await rt.stop();
    }
  });

  it('SIGUSR1 opens no debugger: nothing listens on 9229, the runtime keeps serving', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      const before = await connects(9229); // another process on this machine might hold the port
      rt.child.kill('SIGUSR1');
      await rt.waitForLog((l) => l.msg === 'ignored SIGUSR1: the runtime never opens a debugger');
      await quietFor(500, 'negative: the inspector, were it started, would be listening by now');
      assert.equal(listensOnTcp(rt.child.pid!, 9229), false);
      if (!before) assert.equal(await connects(9229), false);
      assert.ok(!rt.stderrText.some((l) => l.includes('Debugger listening')));
      await served(rt);
    } finally {
      await rt.stop();
    }
  });
});

describe('file descriptors', () => {
  it('exhausted at accept: refusals logged once a second with a count, service resumes when descriptors free up', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    const pid = rt.child.pid!;
    const clients: net.Socket[] = [];
    let closedByServer = 0;
    const connect = () => {
      const s = net.connect(rt.socketPath);
      s.on('error', () => undefined);
      s.on('close', () => closedByServer++);
      clients.push(s);
      return s;
    };
    const refusals = () =>
      rt.logs.filter(
        (l) =>
          l.level === 'warn' &&
          /^refused \d+ connection\(s\) in the last second: the runtime is short of file descriptors \(limit \d+/.test(
            l.msg,
          ),
      );
    try {
      const fdsIdle = fdCount(pid);
      execFileSync('prlimit', ['--pid', String(pid), '--nofile=100:100']);
      // The runtime reads its limit once a second, and accepts the limit minus what it uses minus 32: with
      // these idle clients held, one more is past that budget once the new limit is read, and still far
      // from the limit itself before (beyond it, libuv would close the waiting clients unseen).
      const held = 100 - fdsIdle - 14;
      await Promise.all(Array.from({ length: held }, () => new Promise((resolve) => connect().on('connect', resolve))));
      const request = Buffer.from(JSON.stringify(env('probe')));
      await until(
        () =>
          `the runtime to follow its new limit (100): a client past the budget closed unanswered; logs:\n${rt.stderrText.join('\n')}`,
        async () => (await rawExchange(rt.socketPath, request, 10_000)) === null,
        15_000,
        50,
      );
      assert.equal(closedByServer, 0, 'the held clients stay');
      // A client every 50 ms, each refused, until two lines name the new limit: a second between them.
      const named = await until(
        () => `two refusal lines naming the limit 100; logs:\n${rt.stderrText.join('\n')}`,
        () => {
          connect();
          const lines = refusals().filter((l) => l.fd_limit === 100);
          return lines.length >= 2 && lines;
        },
        15_000,
        50,
      );
      assert.ok(closedByServer > 0, 'the excess refused');
      assert.ok(named.every((l) => (l.refused as number) > 0));
      const times = refusals().map((l) => Date.parse(String(l.time)));
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      assert.ok(
        gaps.every((ms) => ms >= 900),
        `one line a second at most: ${gaps.join(', ')} ms apart`,
      );
      assert.equal(rt.child.exitCode, null, 'still running');
      for (const s of clients) s.destroy();
      await until(
        () => `the runtime to close the clients' connections: ${fdCount(pid)} descriptors open, ${fdsIdle} before`,
        () => fdCount(pid) <= fdsIdle + 2,
        15_000,
      );
      await served(rt);
      assert.equal(shims(path.dirname(rt.socketPath)).length, 1);
    } finally {
      for (const s of clients) s.destroy();
      await rt.stop();
    }
  });
});
