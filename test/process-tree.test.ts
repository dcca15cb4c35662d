/**
 * The Python side as a process tree: whatever ends the supervisor or a worker, no process of the
 * handler's tree survives, orphans are reaped (the runtime as PID 1), running out of descriptors is
 * waited out, a corrupted channel is a dead worker, and exactly one Python process has the handler.
 * Assertions read /proc: which processes exist, in which groups, in which state.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { asError, env, fdCount, type Runtime, startRuntime, until } from './helpers.js';

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  comm: string;
}

function readProc(pid: number): Proc | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const [state, ppid, pgid] = stat.slice(close + 2).split(' ');
    return {
      pid,
      ppid: Number(ppid),
      pgid: Number(pgid),
      state: state as string,
      comm: stat.slice(stat.indexOf('(') + 1, close),
    };
  } catch {
    return null;
  }
}

function allProcs(): Proc[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map((e) => readProc(Number(e)))
    .filter((p): p is Proc => p !== null);
}

function descendants(root: number): Proc[] {
  const procs = allProcs();
  const found: Proc[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

/** Processes of `tree` (by PID) or of its process groups still running: zombies are dead. */
function survivors(tree: Proc[]): Proc[] {
  const pids = new Set(tree.map((p) => p.pid));
  const groups = new Set(tree.map((p) => p.pgid).filter((g) => g !== ownGroup));
  return allProcs().filter((p) => p.state !== 'Z' && (pids.has(p.pid) || groups.has(p.pgid)));
}

/** The reapers under the runtime, and the shims (a reaper's child that runs the shim): one of each. */
function pythonProcesses(runtimePid: number): { reapers: Proc[]; shims: Proc[] } {
  const tree = descendants(runtimePid).filter((p) => p.state !== 'Z');
  const reapers = tree.filter((p) => p.ppid === runtimePid && p.comm === 'asya-reaper');
  const shims = tree.filter((p) => reapers.some((r) => r.pid === p.ppid) && cmdline(p.pid).includes('asya_shim'));
  return { reapers, shims };
}

/** A process's command line; empty once it has exited (an orphan ends while the tree is read). */
function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function assertOnePython(runtimePid: number): number {
  const { reapers, shims } = pythonProcesses(runtimePid);
  assert.equal(reapers.length, 1, `one reaper: ${JSON.stringify(reapers)}`);
  assert.equal(shims.length, 1, `one Python process with the handler: ${JSON.stringify(shims)}`);
  return shims[0]!.pid;
}

/** Wait until none of `tree` runs; returns how long that took. */
async function gone(tree: Proc[], timeoutMs: number): Promise<number> {
  const started = Date.now();
  await until(
    `no survivor of ${JSON.stringify(tree.map((p) => `${p.pid}/${p.comm}`))}`,
    () => survivors(tree).length === 0,
    timeoutMs,
  ).catch(() => {
    throw new Error(`survivors after ${timeoutMs} ms: ${JSON.stringify(survivors(tree))}`);
  });
  return Date.now() - started;
}

const ownGroup = readProc(process.pid)!.pgid;

/** Last resort so a failing test leaves nothing behind (never the test's own process group). */
function killAll(tree: Proc[]): void {
  for (const p of survivors(tree)) {
    for (const target of p.pgid === ownGroup ? [p.pid] : [-p.pgid, p.pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** Start a `spawn` message (the handler starts helpers and sleeps); resolves once they run. */
async function spawnHelpers(
  rt: Runtime,
  extra: Record<string, unknown> = {},
): Promise<{ answer: Promise<unknown>; pids: { handler: number; children: number[] } }> {
  const pidfile = path.join(rt.dir, `pids-${Date.now()}.json`);
  const answer = rt.send(env({ do: 'spawn', pidfile, ...extra }), 60_000).catch((err: Error) => err);
  const pids = await until(
    'the handler to start its helpers',
    () =>
      fs.existsSync(pidfile) &&
      (JSON.parse(fs.readFileSync(pidfile, 'utf8')) as { handler: number; children: number[] }),
  );
  await until("the nested helper's own child", () => descendants(pids.children[2]!).length > 0);
  return { answer, pids };
}

function waitReady(rt: Runtime): Promise<boolean> {
  return until('the ready file', () => rt.isReady(), 20_000);
}

describe('the supervisor dies with a message in flight', () => {
  const cases = [
    {
      name: 'SIGKILL (as the OOM killer does)',
      wrap: [] as string[],
      kill: async (pid: number) => void process.kill(pid, 'SIGKILL'),
      exit: { code: null, signal: 'SIGKILL' },
    },
    {
      name: 'a second SIGTERM, under a wrapper shell',
      wrap: ['sh', '-c', '"$@"; exit $?', 'sh'],
      kill: async (pid: number, rt: Runtime) => {
        process.kill(pid, 'SIGTERM');
        await rt.waitForLog((l) => l.msg === 'shutting down'); // the first one is being handled
        process.kill(pid, 'SIGTERM');
      },
      exit: { code: 1, signal: null },
    },
  ];
  for (const c of cases) {
    it(`${c.name}: the handler and every process it started are gone within 2 s`, async () => {
      const rt = await startRuntime({ handler: 'tree.act', wrap: c.wrap });
      const runtimePid = c.wrap.length
        ? (await until('the runtime under the shell', () => descendants(rt.child.pid!).find((p) => p.comm === 'node')))
            .pid
        : rt.child.pid!;
      let tree: Proc[] = [];
      try {
        const { answer, pids } = await spawnHelpers(rt);
        tree = descendants(runtimePid);
        assert.equal(assertOnePython(runtimePid), pids.handler, 'the ready pid is the handler process');
        for (const pid of [pids.handler, ...pids.children])
          assert.ok(
            tree.some((p) => p.pid === pid),
            `${pid} is in the tree`,
          );
        assert.equal(tree.length, 6, `reaper, shim, 3 helpers, sh's sleep: ${JSON.stringify(tree)}`);
        await c.kill(runtimePid, rt);
        const ms = await gone(tree, 5000);
        assert.ok(ms < 2000, `took ${ms} ms`);
        assert.ok((await answer) instanceof Error, 'the client got no answer (the supervisor was killed)');
        assert.deepEqual(await rt.exited, c.exit);
        if (c.exit.code === 1) {
          assert.equal(rt.isReady(), false, 'the first SIGTERM withdrew the ready file');
          assert.ok(rt.logs.some((l) => l.msg === 'second signal: exiting without waiting'));
        }
      } finally {
        killAll(tree);
        await rt.stop();
      }
    });
  }

  it('a graceful shutdown whose grace runs out ends the tree too: exit 0, no socket, no ready file', async () => {
    const rt = await startRuntime({ handler: 'tree.act', env: { ASYA_SHUTDOWN_TIMEOUT: '0.5' } });
    let tree: Proc[] = [];
    try {
      const { answer } = await spawnHelpers(rt);
      tree = descendants(rt.child.pid!);
      rt.child.kill('SIGTERM');
      assert.equal((await rt.exited).code, 0);
      assert.equal(survivors(tree).length, 0, 'nothing left once the runtime has exited');
      assert.ok((await answer) instanceof Error, 'closed without an answer, for the sidecar to retry');
      assert.deepEqual(fs.readdirSync(path.dirname(rt.socketPath)), []);
    } finally {
      killAll(tree);
      await rt.stop();
    }
  });
});

describe('a worker that ends takes its tree with it', () => {
  it('time limit, hard stage: the handler and its helpers are killed, then exactly one new Python process serves', async () => {
    const rt = await startRuntime({
      handler: 'tree.act',
      env: { ASYA_HANDLER_TIMEOUT: '1', ASYA_HANDLER_KILL_GRACE: '0.5' },
    });
    let tree: Proc[] = [];
    try {
      const { answer, pids } = await spawnHelpers(rt, { stubborn: true });
      tree = descendants(rt.child.pid!);
      assert.equal(asError(await answer).error, 'handler_timeout');
      const ms = await gone(tree, 5000);
      assert.ok(ms < 1000, `the old tree was gone ${ms} ms after the answer`);
      await waitReady(rt);
      const served = ((await rt.send(env({ do: 'pid' }))) as Array<{ payload: { pid: number } }>)[0]?.payload.pid;
      assert.notEqual(served, pids.handler);
      assert.equal(assertOnePython(rt.child.pid!), served);
    } finally {
      killAll(tree);
      await rt.stop();
    }
  });

  it('crashes: each restart ends the helpers of the crashed handler, and the supervisor holds no more fds', async () => {
    const rt = await startRuntime({ handler: 'tree.act' });
    const runtimePid = rt.child.pid!;
    const trees: Proc[] = [];
    try {
      const counts: number[] = [];
      for (let i = 0; i < 4; i++) {
        const { answer } = await spawnHelpers(rt, { crash: 0.5 });
        const tree = descendants(runtimePid);
        trees.push(...tree);
        const e = asError(await answer);
        assert.equal(e.error, 'worker_crashed');
        assert.equal(e.details.exit_code, 1);
        await gone(tree, 5000);
        await waitReady(rt);
        assertOnePython(runtimePid);
        counts.push(fdCount(runtimePid));
      }
      assert.equal(
        descendants(runtimePid).length,
        2,
        `only the new reaper and shim: ${JSON.stringify(descendants(runtimePid))}`,
      );
      assert.equal(counts[3], counts[0], `open fds after each restart: ${counts.join(', ')}`);
    } finally {
      killAll(trees);
      await rt.stop();
    }
  });
});

describe('as PID 1 of a PID namespace', () => {
  const canUnshare = spawnSync('unshare', ['-fp', '--mount-proc', 'true']).status === 0;
  it('orphans of the handler and of crashed workers are reaped; subprocess waits still see real exit codes', {
    skip: canUnshare ? false : 'unshare -p not permitted here',
  }, async () => {
    const rt = await startRuntime({ handler: 'tree.act', wrap: ['unshare', '-fp', '--mount-proc'] });
    let tree: Proc[] = [];
    try {
      const runtimePid = (
        await until('the runtime in the namespace', () => descendants(rt.child.pid!).find((p) => p.comm === 'node'))
      ).pid;
      assert.equal(rt.logs.find((l) => l.msg === 'starting Asya runtime')?.pid, 1, 'the runtime is PID 1');
      const ns = fs.readlinkSync(`/proc/${runtimePid}/ns/pid`);
      const inNamespace = () =>
        allProcs().filter((p) => {
          try {
            return fs.readlinkSync(`/proc/${p.pid}/ns/pid`) === ns;
          } catch {
            return false;
          }
        });
      for (let i = 0; i < 5; i++) await rt.send(env({ do: 'orphan' }));
      assert.equal(asError(await rt.send(env({ do: 'orphan', crash: true }))).error, 'worker_crashed');
      await waitReady(rt);
      for (let i = 0; i < 5; i++) await rt.send(env({ do: 'orphan' }));
      const run = ((await rt.send(env({ do: 'run' }))) as Array<{ payload: unknown }>)[0]?.payload;
      assert.deepEqual(
        run,
        { code: 7, terminated: -15 },
        "the handler's subprocess.run and terminate() work as anywhere",
      );
      const expected = ['asya-reaper', 'node', readProc(assertOnePython(runtimePid))!.comm].sort();
      const settled = () => {
        tree = inNamespace();
        return JSON.stringify(tree.map((p) => p.comm).sort()) === JSON.stringify(expected);
      };
      // The last orphans end 50 ms after their parent: until they are reaped.
      await until(() => `the namespace to hold only ${expected}: ${JSON.stringify(tree)}`, settled, 10_000);
      const zombies = tree.filter((p) => p.state === 'Z');
      assert.deepEqual(zombies, [], 'no zombies in the namespace');
      assert.deepEqual(tree.map((p) => p.comm).sort(), expected, 'the runtime, one reaper, one shim');
    } finally {
      // Whatever failed above: the namespace's processes go, or unshare (which ignores SIGTERM while it
      // waits for its child) would keep the test waiting for ever.
      killAll(tree.length > 0 ? tree : descendants(rt.child.pid!));
      await rt.stop();
    }
  });
});

describe('out of file descriptors', () => {
  const canPrlimit = spawnSync('prlimit', ['--version']).status === 0;
  it('a restart refused with EMFILE is logged and retried, not counted; serving resumes once fds are back', {
    skip: canPrlimit ? false : 'no prlimit',
  }, async () => {
    const rt = await startRuntime({ handler: 'tree.act' });
    const pid = rt.child.pid!;
    try {
      const limits = spawnSync(
        'prlimit',
        ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '--output', 'SOFT,HARD'],
        { encoding: 'utf8' },
      )
        .stdout.trim()
        .split(/\s+/);
      const open = fdCount(pid);
      // room for the crashing message's connection, not for the 5 socketpairs of a new worker
      assert.equal(spawnSync('prlimit', ['--pid', String(pid), `--nofile=${open + 1}:${limits[1]}`]).status, 0);
      assert.equal(asError(await rt.send(env({ do: 'orphan', crash: true }))).error, 'worker_crashed');
      await until('three refused spawns', () => rt.logs.filter((l) => l.code === 'EMFILE').length >= 3, 10_000);
      const warning = rt.logs.find((l) => l.code === 'EMFILE');
      assert.equal(warning?.level, 'warn');
      assert.match(warning?.msg ?? '', /^cannot start the Python process \(EMFILE starting .*\); retrying$/);
      assert.equal(rt.child.exitCode, null, 'still running');
      assert.equal(rt.isReady(), false, 'not ready without a Python process');
      assert.equal(
        rt.logs.filter((l) => /restart failed/.test(l.msg)).length,
        0,
        'not counted as failed re-initialisations',
      );
      assert.equal(spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limits[0]}:${limits[1]}`]).status, 0);
      await waitReady(rt);
      assert.equal(
        typeof ((await rt.send(env({ do: 'pid' }))) as Array<{ payload: { pid: number } }>)[0]?.payload.pid,
        'number',
      );
      assertOnePython(pid);
      rt.child.kill('SIGTERM');
      assert.equal((await rt.exited).code, 0);
      assert.equal(rt.logs.filter((l) => l.level === 'fatal').length, 0);
    } finally {
      await rt.stop();
    }
  });
});

describe('a corrupted channel', () => {
  it('a handler writing a 2 GiB length prefix into the channel: answered worker_crashed, restarted, serving', async () => {
    const rt = await startRuntime({ handler: 'tree.act' });
    try {
      const before = assertOnePython(rt.child.pid!);
      const started = Date.now();
      const e = asError(await rt.send(env({ do: 'corrupt' }), 10_000));
      assert.ok(Date.now() - started < 5000, 'answered at once, though no time limit is set');
      assert.equal(e.error, 'worker_crashed');
      assert.match(e.details.traceback, /corrupted channel: .*2147483648 bytes/);
      assert.ok(rt.logs.some((l) => l.level === 'error' && /^corrupted channel from the Python process/.test(l.msg)));
      await waitReady(rt);
      const after = ((await rt.send(env({ do: 'pid' }))) as Array<{ payload: { pid: number } }>)[0]?.payload.pid;
      assert.notEqual(after, before);
      assert.equal(assertOnePython(rt.child.pid!), after);
    } finally {
      await rt.stop();
    }
  });

  it('a 2 GiB length with the head of a real message, then the handler sleeps: still answered at once', async () => {
    const rt = await startRuntime({ handler: 'tree.act' });
    try {
      const started = Date.now();
      const e = asError(await rt.send(env({ do: 'corrupt', head: true, s: 1000 }), 10_000));
      assert.ok(Date.now() - started < 5000, 'answered at once, though no time limit is set');
      assert.equal(e.error, 'worker_crashed');
      assert.match(e.details.traceback, /corrupted channel: .*2147483648 bytes/);
      await waitReady(rt);
      assertOnePython(rt.child.pid!);
    } finally {
      await rt.stop();
    }
  });
});
