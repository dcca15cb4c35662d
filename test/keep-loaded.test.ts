/**
 * Issue #14, "keep the model loaded": the two-stage time limit, worker recycling, async and generator
 * handlers, constructor arguments, close(), and `check` loading as the runtime does. Over the real socket
 * with a real Python (3.7 and 3.13 where the Python side differs by version), plus the supervisor driven
 * by a fake worker for the ordering rules.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { DEFAULT_POLICY, type WorkerPolicy } from '../src/worker/policy.js';
import { Pool } from '../src/worker/pool.js';
import { FakeWorker } from './fake-worker.js';
import {
  asError,
  CLI,
  env,
  fakeJob,
  HANDLERS,
  pyenvPython,
  type Runtime,
  runNode,
  runToExit,
  startRuntime,
  tempDir,
} from './helpers.js';

type Payloads = Array<{ payload: Record<string, unknown> }>;
const payloads = (answer: unknown) => (answer as Payloads).map((o) => o.payload);

/** Pythons where the shim's behaviour depends on the version (signals, asyncio): the oldest and newest. */
const VERSIONS = ['3.7', '3.13'].map((v) => ({ v, python: pyenvPython(v) }));

function marks(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

/** Python processes that are shims (not reapers) anywhere below `root`. */
function shimsBelow(root: number): number[] {
  const parent = new Map<number, number>();
  const name = new Map<number, string>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
      const close = stat.lastIndexOf(')');
      name.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
      parent.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const below = (pid: number): boolean => {
    for (let p = parent.get(pid), hops = 0; p !== undefined && hops < 10; p = parent.get(p), hops++)
      if (p === root) return true;
    return false;
  };
  return [...parent.keys()].filter(
    (pid) => below(pid) && name.get(pid)?.startsWith('python') === true && parent.get(pid) !== root,
  );
}

/** Samples the process tree every 5 ms; `max` is the most shims ever seen alive together. */
function watchShims(rt: Runtime): { stop: () => number } {
  let max = 0;
  const timer = setInterval(() => (max = Math.max(max, shimsBelow(rt.child.pid!).length)), 5);
  return {
    stop: () => {
      clearInterval(timer);
      return max;
    },
  };
}

async function pythonPids(rt: Runtime): Promise<number[]> {
  return rt.logs.filter((l) => l.msg === 'handler loaded').map((l) => l.python_pid as number);
}

describe('two-stage time limit', () => {
  for (const { v, python } of VERSIONS) {
    it(`Python ${v}: at ASYA_HANDLER_TIMEOUT the handler is interrupted inside Python; the same process and instance serve the next message`, {
      skip: python ? false : `no Python ${v}`,
    }, async () => {
      const dir = tempDir();
      const file = path.join(dir, 'marks');
      const rt = await startRuntime({
        handler: 'keep.Slow.process',
        env: { ASYA_PYTHONEXECUTABLE: python!, ASYA_HANDLER_TIMEOUT: '1', KEEP_MARKS: file },
      });
      try {
        const first = payloads(await rt.send(env({ s: 0 })))[0]!;
        const started = Date.now();
        const e = asError(await rt.send(env({ s: 60 })));
        const took = Date.now() - started;
        assert.equal(e.error, 'handler_timeout');
        assert.equal(e.details.type, 'HandlerTimeout');
        assert.equal(e.details.killed, false);
        assert.match(
          e.details.message,
          /ASYA_HANDLER_TIMEOUT=1s: it was interrupted \(HandlerTimeout raised in it\); the Python process and its loaded handler stay/,
        );
        assert.match(
          e.details.traceback,
          /keep\.py", line \d+, in process\n\s+time\.sleep\(payload\.get\("s", 0\)\)/,
          'the traceback shows where the handler was',
        );
        assert.match(e.details.traceback, /HandlerTimeout: the handler ran longer than ASYA_HANDLER_TIMEOUT=1/);
        assert.ok(took < 6000, `answered ${took} ms after it was sent`);
        assert.equal(marks(file).filter((m) => m.startsWith('finally')).length, 2, 'its finally block ran');
        const next = payloads(await rt.send(env({ s: 0 })))[0]!;
        assert.equal(next.pid, first.pid, 'the same Python process');
        assert.equal(next.instance, first.instance, 'the same instance');
        assert.equal(next.calls, 3);
        assert.equal((await pythonPids(rt)).length, 1, 'never restarted');
        assert.ok(rt.logs.some((l) => l.msg === 'handler ran longer than ASYA_HANDLER_TIMEOUT; interrupting it'));
      } finally {
        await rt.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('a handler that swallows the interruption is killed ASYA_HANDLER_KILL_GRACE later; a new process serves the next message', async () => {
    const rt = await startRuntime({
      handler: 'keep.Slow.process',
      env: { ASYA_HANDLER_TIMEOUT: '0.5', ASYA_HANDLER_KILL_GRACE: '1' },
    });
    try {
      const first = payloads(await rt.send(env({})))[0]!;
      const started = Date.now();
      const e = asError(await rt.send(env({ stubborn: 60 })));
      const took = Date.now() - started;
      assert.equal(e.error, 'handler_timeout');
      assert.equal(e.details.killed, true);
      assert.match(
        e.details.message,
        /nor within ASYA_HANDLER_KILL_GRACE=1s of being interrupted: the Python process was killed/,
      );
      assert.ok(took >= 1400 && took < 10_000, `answered after ${took} ms (0.5 s + 1 s grace)`);
      const next = payloads(await rt.send(env({})))[0]!;
      assert.notEqual(next.pid, first.pid, 'a new Python process');
      assert.ok(
        rt.logs.some((l) => /still running ASYA_HANDLER_KILL_GRACE after it was interrupted; killing/.test(l.msg)),
      );
    } finally {
      await rt.stop();
    }
  });
});

describe('worker recycling', () => {
  it('ASYA_WORKER_MAX_MESSAGES: replaced between messages, close() first, no message lost, never two processes at once', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'marks');
    const rt = await startRuntime({
      handler: 'keep.Closable.process',
      env: { ASYA_WORKER_MAX_MESSAGES: '3', KEEP_MARKS: file },
    });
    const watch = watchShims(rt);
    try {
      // Sent together: they queue while a process is replaced, and all are answered.
      const answers = await Promise.all(Array.from({ length: 7 }, () => rt.send(env({}))));
      const pids = answers.map((a) => payloads(a)[0]!.pid as number);
      assert.equal(new Set(pids.slice(0, 3)).size, 1);
      assert.equal(new Set(pids.slice(3, 6)).size, 1);
      assert.notEqual(pids[0], pids[3]);
      assert.notEqual(pids[3], pids[6]);
      const recycled = rt.logs.filter((l) => l.reason === 'max_messages');
      assert.equal(recycled.length, 2);
      assert.match(
        recycled[0]!.msg,
        /^recycling the Python process: it handled 3 messages \(ASYA_WORKER_MAX_MESSAGES=3\)/,
      );
      assert.deepEqual(marks(file), [`close ${pids[0]}`, `close ${pids[3]}`], 'close() once per replaced process');
      assert.equal(watch.stop(), 1, 'never two handler processes alive at once');
      assert.equal(rt.logs.filter((l) => l.level === 'error').length, 0);
    } finally {
      watch.stop();
      await rt.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ASYA_WORKER_MAX_MEMORY: a process whose RSS crossed the limit is replaced after its answer', async () => {
    const rt = await startRuntime({ handler: 'keep.Closable.process', env: { ASYA_WORKER_MAX_MEMORY: '96MiB' } });
    try {
      const small = payloads(await rt.send(env({})))[0]!;
      const grown = payloads(await rt.send(env({ grow: 128 * 1024 * 1024 })))[0]!;
      assert.equal(grown.pid, small.pid, 'the message that grew it is answered normally');
      const after = payloads(await rt.send(env({})))[0]!;
      assert.notEqual(after.pid, small.pid);
      const line = rt.logs.find((l) => l.reason === 'max_memory');
      assert.match(line?.msg ?? '', /its resident memory \(1\d\d(\.\d)? MiB\) exceeds ASYA_WORKER_MAX_MEMORY=96 MiB/);
      assert.equal(line?.level, 'warn');
    } finally {
      await rt.stop();
    }
  });

  it('3 MemoryErrors in a row replace the process (it stays alive and ready otherwise)', async () => {
    const rt = await startRuntime({ handler: 'keep.Closable.process' });
    try {
      const first = payloads(await rt.send(env({})))[0]!;
      for (let i = 0; i < 3; i++)
        assert.equal(asError(await rt.send(env({ memory_error: true }))).details.type, 'MemoryError');
      const next = payloads(await rt.send(env({})))[0]!;
      assert.notEqual(next.pid, first.pid);
      assert.match(
        rt.logs.find((l) => l.reason === 'memory_errors')?.msg ?? '',
        /3 messages in a row raised MemoryError/,
      );
    } finally {
      await rt.stop();
    }
  });
});

describe('every kind of callable', () => {
  for (const { v, python } of VERSIONS) {
    it(`Python ${v}: async methods share one loop: an asyncio.Queue made in __init__ works on message 2; the time limit cancels the task`, {
      skip: python ? false : `no Python ${v}`,
    }, async () => {
      const dir = tempDir();
      const file = path.join(dir, 'marks');
      const rt = await startRuntime({
        handler: 'keep.AsyncQueue.process',
        env: { ASYA_PYTHONEXECUTABLE: python!, ASYA_HANDLER_TIMEOUT: '1', KEEP_MARKS: file },
      });
      try {
        const one = payloads(await rt.send(env({ n: 1 })))[0]!;
        const two = payloads(await rt.send(env({ n: 2 })))[0]!;
        assert.deepEqual([one.got, two.got, two.loops], [1, 2, 1]);
        const e = asError(await rt.send(env({ n: 3, s: 60 })));
        assert.equal(e.error, 'handler_timeout');
        assert.equal(e.details.killed, false);
        assert.match(e.details.traceback, /keep\.py", line \d+, in process\n\s+await asyncio\.sleep/);
        assert.deepEqual(marks(file).length, 3, 'its finally ran');
        const four = payloads(await rt.send(env({ n: 4 })))[0]!;
        assert.equal(four.pid, one.pid);
        assert.equal(four.loops, 1);
        assert.equal(four.got, 3, 'the interrupted call left its item; the queue still works on the same loop');
      } finally {
        await rt.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it(`Python ${v}: async functions, and sync and async generators (their items are the fan-out, in order)`, {
      skip: python ? false : `no Python ${v}`,
    }, async () => {
      for (const [handler, payload, expected] of [
        ['keep.async_function', {}, [{ async: true, python: v }]],
        ['keep.sync_generator', { n: 3 }, [{ i: 0 }, { i: 1 }, { i: 2 }]],
        ['keep.async_generator', { n: 5 }, [0, 1, 2, 3, 4].map((i) => ({ i }))],
      ] as const) {
        const rt = await startRuntime({ handler, env: { ASYA_PYTHONEXECUTABLE: python! } });
        try {
          assert.deepEqual(payloads(await rt.send(env(payload))), expected, handler);
          assert.deepEqual(payloads(await rt.send(env(payload))), expected, `${handler}, again`);
        } finally {
          await rt.stop();
        }
      }
    });
  }
});

describe('constructor arguments and close()', () => {
  it('ASYA_HANDLER_ARGS: keyword arguments for the constructor; a parameter it supplies needs no default', async () => {
    const rt = await startRuntime({
      handler: 'keep.WithArgs.process',
      env: { ASYA_HANDLER_ARGS: '{"model_path": "/models/m.bin", "labels": ["x", "y"]}' },
    });
    try {
      assert.deepEqual(payloads(await rt.send(env({}))), [
        { model_path: '/models/m.bin', threshold: 0.5, labels: ['x', 'y'] },
      ]);
    } finally {
      await rt.stop();
    }
  });

  it('refused at start: a missing parameter, an unknown one, arguments for a function, a value that is not a JSON object', async () => {
    const cases: Array<[Record<string, string>, string, number, RegExp]> = [
      [
        {},
        'keep.WithArgs.process',
        4,
        /keep\.WithArgs\.__init__\(\) parameter 'model_path' has no default value: .*ASYA_HANDLER_ARGS \(unset\)/,
      ],
      [
        { ASYA_HANDLER_ARGS: '{"threshold": 1}' },
        'keep.WithArgs.process',
        4,
        /parameter 'model_path' has no default value: .*ASYA_HANDLER_ARGS \(threshold\)/,
      ],
      [
        { ASYA_HANDLER_ARGS: '{"model_path": "x", "modle": 1}' },
        'keep.WithArgs.process',
        4,
        /ASYA_HANDLER_ARGS gives modle, which keep\.WithArgs\.__init__\(\) does not take \(its parameters: model_path, threshold, labels\)/,
      ],
      [{ ASYA_HANDLER_ARGS: '{"a": 1}' }, 'basic.echo', 4, /ASYA_HANDLER_ARGS is set, but basic\.echo is a function/],
      [
        { ASYA_HANDLER_ARGS: '["x"]' },
        'keep.WithArgs.process',
        2,
        /ASYA_HANDLER_ARGS="\[\\"x\\"\]" is not valid: expected a JSON object of keyword arguments/,
      ],
      [
        { ASYA_HANDLER_ARGS: '{model_path: 1}' },
        'keep.WithArgs.process',
        2,
        /ASYA_HANDLER_ARGS=.* is not valid: expected a JSON object/,
      ],
    ];
    await Promise.all(
      cases.map(async ([extra, handler, code, pattern]) => {
        const r = await runToExit({ handler, env: extra });
        assert.equal(r.code, code, `${handler} ${JSON.stringify(extra)}:\n${r.text}`);
        assert.match(r.logs.find((l) => l.level === 'fatal')?.msg ?? '', pattern);
        assert.equal(r.readyFileSeen, false);
      }),
    );
  });

  it('close() runs once on SIGTERM; a close() that raises is logged and the exit is still 0', async () => {
    for (const raises of [false, true]) {
      const dir = tempDir();
      const file = path.join(dir, 'marks');
      const rt = await startRuntime({
        handler: 'keep.Closable.process',
        env: { KEEP_MARKS: file, KEEP_CLOSE_RAISES: raises ? '1' : undefined },
      });
      const { pid } = payloads(await rt.send(env({})))[0]!;
      rt.child.kill('SIGTERM');
      assert.equal((await rt.exited).code, 0);
      assert.deepEqual(marks(file), [`close ${pid}`]);
      const line = await rt.waitForLog((l) => /^close\(\) (returned|raised)/.test(l.msg));
      if (raises) {
        assert.equal(line?.msg, 'close() raised RuntimeError: the model would not let go');
        assert.equal(line?.level, 'warn');
        assert.match(String(line?.traceback), /in close\n/);
      } else assert.equal(line?.msg, 'close() returned');
      await rt.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('check tells the truth', () => {
  const check = (args: string[], cwd?: string, extraEnv: Record<string, string> = {}) =>
    runNode([CLI, 'check', ...args], { cwd, env: { PYTHONPATH: HANDLERS, ...extraEnv } });

  it('a module importable only from the working directory loads as with call, with a note that the pod needs PYTHONPATH', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'only_here.py'), 'def process(payload):\n    return payload\n');
    const r = await check(['--handler', 'only_here.process'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /note: only_here\.py was found in the current directory, which the deployed runtime does not search/,
    );
    const ok = await check(['--handler', 'only_here.process'], dir, { PYTHONPATH: dir });
    assert.equal(ok.code, 0, ok.stderr);
    assert.doesNotMatch(ok.stderr, /note:/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names the kind of callable; refuses one that cannot be called with one argument', async () => {
    const kinds: Array<[string, string]> = [
      ['basic.echo', 'function'],
      ['keep.Closable.process', 'method with close()'],
      ['keep.AsyncQueue.process', 'async method'],
      ['keep.async_function', 'async function'],
      ['keep.sync_generator', 'generator function'],
      ['keep.async_generator', 'async generator function'],
    ];
    const results = await Promise.all(kinds.map(([handler]) => check(['--handler', handler])));
    kinds.forEach(([handler, kind], i) => {
      assert.equal(results[i]!.code, 0, results[i]!.stderr);
      assert.ok(results[i]!.stdout.startsWith(`ok: ${handler} (${kind}, payload mode)`), results[i]!.stdout);
    });
    const two = await check(['--handler', 'keep.two_arguments']);
    assert.equal(two.code, 4);
    assert.match(two.stderr, /keep\.two_arguments\(payload, extra\) cannot be called with one argument/);
  });
});

describe('the supervisor with a fake worker (policy as data)', () => {
  const parsed = parseConfig({ ASYA_HANDLER: 'm.f' });
  assert.ok(parsed.ok);
  const config = parsed.config;
  const log = createLogger('error', 'json');
  const job = () => fakeJob(env({}));
  const supervise = (policy: WorkerPolicy) =>
    new Pool(config, policy, () => () => new FakeWorker(), log, {
      onReady: (up) => FakeWorker.events.push(`ready ${up}`),
      onFatal: () => undefined,
    });

  it('recycling stops the old worker, and waits for its exit, before the new one starts; readiness is withdrawn meanwhile', async () => {
    FakeWorker.reset();
    const s = supervise({ ...DEFAULT_POLICY, recycle: { ...DEFAULT_POLICY.recycle, maxMessages: 2 } });
    await s.start();
    const jobs = Array.from({ length: 3 }, job);
    for (const j of jobs) s.submit(j.job);
    const bodies = await Promise.all(jobs.map((j) => j.answer));
    assert.deepEqual(
      bodies.map((b) => (JSON.parse(b!) as Payloads)[0]!.payload),
      [1, 1, 2],
    );
    const e = FakeWorker.events;
    assert.deepEqual(e.slice(e.indexOf('spawn 1')), [
      'spawn 1',
      'ready true',
      'ready false',
      'stop 1',
      'exited 1',
      'spawn 2',
      'ready true',
    ]);
    await s.shutdown(100);
  });

  it('with messages waiting, Python gets the next before the answer is written; not when a recycle is due', async () => {
    FakeWorker.reset();
    const s = supervise({ ...DEFAULT_POLICY, recycle: { ...DEFAULT_POLICY.recycle, maxMessages: 3 } });
    await s.start();
    const spawned = FakeWorker.spawned.length;
    const jobs = Array.from({ length: 4 }, (_, i) => {
      const j = job();
      const respond = j.job.exchange.respond;
      j.job.exchange.respond = (chunks) => {
        FakeWorker.order.push(`answer ${i}`);
        respond(chunks);
      };
      return j;
    });
    for (const j of jobs) s.submit(j.job);
    await Promise.all(jobs.map((j) => j.answer));
    const [a, b] = [`call ${spawned}`, `call ${spawned + 1}`];
    // The third message is the last before the recycle: the next waits for its answer and the new process.
    assert.deepEqual(FakeWorker.order, [a, a, 'answer 0', a, 'answer 1', 'answer 2', b, 'answer 3']);
    await s.shutdown(100);
  });

  it('time limit: interrupt at the soft stage; terminate only after the kill grace', async () => {
    FakeWorker.reset();
    const policy = { ...DEFAULT_POLICY, timeLimit: { softMs: 30, killGraceMs: 60 } };
    FakeWorker.behaviour = 'soft';
    const s = supervise(policy);
    const first = await s.start();
    const soft = job();
    s.submit(soft.job);
    assert.equal(asError(JSON.parse((await soft.answer)!)).details.killed, false);
    assert.ok(!FakeWorker.events.some((ev) => ev.startsWith('terminate')));
    FakeWorker.behaviour = 'hard';
    const hard = job();
    s.submit(hard.job);
    const e = asError(JSON.parse((await hard.answer)!));
    assert.equal(e.details.killed, true);
    assert.deepEqual(
      FakeWorker.events.filter((ev) => /interrupt|terminate/.test(ev)),
      [`interrupt ${first.pid}`, `interrupt ${first.pid}`, `terminate ${first.pid} timeout`],
    );
    await s.shutdown(100);
  });
});
