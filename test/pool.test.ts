/**
 * ASYA_WORKERS=N: N Python processes serving one queue. Concurrent messages run in parallel on
 * distinct processes, start in arrival order, and a worker restarting (crash, recycling, a kill)
 * leaves the others serving with the ready file standing; it goes only when none can serve. Every
 * way the runtime ends leaves no Python process behind. Real supervisor, real Python, real socket.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { DEFAULT_POLICY } from '../src/worker/policy.js';
import { Pool } from '../src/worker/pool.js';
import { FakeWorker } from './fake-worker.js';
import {
  asError,
  CLI,
  env,
  fakeJob,
  HANDLERS,
  type LogLine,
  type Runtime,
  runNode,
  runToExit,
  sample,
  scrape,
  startRuntime,
  tempDir,
  until,
} from './helpers.js';

interface Work {
  pid: number;
  n: number;
  start: number;
  end: number;
}

async function work(rt: Runtime, payload: Record<string, unknown>): Promise<Work> {
  const answer = (await rt.send(env(payload, { id: `msg-${String(payload.n)}` }))) as Array<{ payload: Work }>;
  assert.equal(answer.length, 1, JSON.stringify(answer));
  return answer[0]!.payload;
}

const loadedLines = (rt: Runtime): LogLine[] => rt.logs.filter((l) => l.msg === 'handler loaded');

/** Resolves when `count` handler loads have been logged (N at start, one more per restart). */
async function loads(rt: Runtime, count: number, timeoutMs = 30_000): Promise<number[]> {
  await until(
    () => `${count} handler loads logged:\n${rt.stderrText.join('\n')}`,
    () => loadedLines(rt).length >= count,
    timeoutMs,
  );
  return loadedLines(rt).map((l) => l.python_pid as number);
}

/** Messages the runtime has taken in so far: those queued or in the handlers, and those answered. */
async function received(port: number): Promise<number> {
  const { body } = await scrape(port);
  const answered = body
    .split('\n')
    .filter((l) => l.startsWith('asya_runtime_messages_total{'))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return (sample(body, 'asya_runtime_queued_messages') ?? 0) + answered;
}

/** Processes under `root` (by parent links), as pid and process group: the reapers, the shims. */
function tree(root: number): Array<{ pid: number; pgid: number }> {
  const procs = fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .flatMap((e) => {
      try {
        const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
        const [, ppid, pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return [{ pid: Number(e), ppid: Number(ppid), pgid: Number(pgid) }];
      } catch {
        return [];
      }
    });
  const found = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs)
      if (found.has(p.ppid) && !found.has(p.pid)) {
        found.add(p.pid);
        grew = true;
      }
  }
  return procs.filter((p) => p.pid !== root && found.has(p.pid));
}

/** Those of `procs` (by pid or process group) still running; zombies are dead. */
function survivors(procs: Array<{ pid: number; pgid: number }>): number[] {
  const pids = new Set(procs.map((p) => p.pid));
  const own = fs.readFileSync('/proc/self/stat', 'utf8');
  const ownGroup = Number(own.slice(own.lastIndexOf(')') + 2).split(' ')[2]);
  const groups = new Set(procs.map((p) => p.pgid).filter((g) => g !== ownGroup));
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
        const [state, , pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return state !== 'Z' && (pids.has(Number(e)) || groups.has(Number(pgid)));
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('ASYA_WORKERS: a pool of Python processes', () => {
  it('two slow calls run at once on two processes; the lines name the worker; metrics count both', async () => {
    const rt = await startRuntime({
      handler: 'pool.work',
      env: { ASYA_WORKERS: '2', ASYA_METRICS_ADDR: '127.0.0.1:0' },
    });
    try {
      const pids = await loads(rt, 2);
      assert.equal(new Set(pids).size, 2);
      const [a, b] = await Promise.all([work(rt, { n: 1, sleep: 1 }), work(rt, { n: 2, sleep: 1 })]);
      assert.notEqual(a.pid, b.pid, 'answered by two processes');
      assert.ok(a.start < b.end && b.start < a.end, `overlapping in time: ${JSON.stringify([a, b])}`);
      for (const w of [a, b]) {
        // Written in a batch, up to BATCH_MS after the answer.
        const line = await rt.waitForLog((l) => l.msg === 'message handled' && l.id === `msg-${w.n}`);
        assert.equal(line?.python_pid, w.pid, 'the line names the process that served it');
        assert.ok(line?.worker === 1 || line?.worker === 2, JSON.stringify(line));
      }
      assert.deepEqual(
        loadedLines(rt)
          .map((l) => l.worker)
          .sort(),
        [1, 2],
      );
      const port = Number((await rt.waitForLog((l) => l.msg === 'serving metrics')).port);
      const { body } = await scrape(port);
      assert.equal(sample(body, 'asya_runtime_workers_ready'), 2);
      assert.equal(sample(body, 'asya_runtime_messages_total{outcome="ok"}'), 2);
      assert.ok((sample(body, 'asya_runtime_python_resident_memory_bytes') ?? 0) > 2 * 4 * 2 ** 20, body);
    } finally {
      await rt.stop();
    }
  });

  it('messages start in arrival order, whichever worker is free', async () => {
    const rt = await startRuntime({
      handler: 'pool.work',
      env: { ASYA_WORKERS: '2', ASYA_METRICS_ADDR: '127.0.0.1:0' },
    });
    try {
      await loads(rt, 2);
      const port = Number((await rt.waitForLog((l) => l.msg === 'serving metrics')).port);
      const sent: Array<Promise<Work>> = [];
      for (let n = 0; n < 6; n++) {
        sent.push(work(rt, { n, sleep: 0.3 }));
        // The arrival order is the runtime's: each message is in before the next is sent.
        await until(`message ${n} taken in by the runtime`, async () => (await received(port)) > n, 10_000);
      }
      const done = await Promise.all(sent);
      const byStart = [...done].sort((x, y) => x.start - y.start).map((w) => w.n);
      assert.deepEqual(byStart, [0, 1, 2, 3, 4, 5], JSON.stringify(done));
      assert.equal(new Set(done.map((w) => w.pid)).size, 2, 'both workers served');
    } finally {
      await rt.stop();
    }
  });

  it('a worker that crashes is answered and restarted while the other serves; the ready file stands', async () => {
    const rt = await startRuntime({ handler: 'pool.work', env: { ASYA_WORKERS: '2' } });
    try {
      const [first, second] = await loads(rt, 2);
      const slow = work(rt, { n: 1, sleep: 1.5 });
      await rt.waitForHandlerLine('work 1 started');
      const crashed = asError(await rt.send(env({ crash: true })));
      assert.equal(crashed.error, 'worker_crashed');
      assert.ok(rt.isReady(), 'ready while one worker restarts');
      const other = await work(rt, { n: 2 });
      const died = await rt.waitForLog((l) => l.msg.startsWith('Python process died'));
      assert.ok(died.worker === 1 || died.worker === 2);
      const served = await slow;
      assert.equal(served.n, 1, 'the message on the other worker finished');
      assert.ok([first, second].includes(served.pid));
      assert.ok(rt.isReady());
      const pids = await loads(rt, 3);
      assert.ok(!pids.slice(0, 2).includes(pids[2]!), 'a new process replaced the dead one');
      assert.ok(typeof other.pid === 'number');
    } finally {
      await rt.stop();
    }
  });

  it('with two workers whose __init__ takes 3 s, killing one delays the next message by well under a second; the ready file goes only when none can serve', async () => {
    const rt = await startRuntime({
      handler: 'pool.SlowInit.process',
      env: { ASYA_WORKERS: '2', POOL_INIT_SECONDS: '3' },
    });
    try {
      const [p1, p2] = await loads(rt, 2);
      const victim = loadedLines(rt).find((l) => l.worker === 1)!.python_pid as number;
      const survivor = victim === p1 ? p2! : p1!;
      const killed = Date.now();
      process.kill(victim, 'SIGKILL');
      // The supervisor notices within milliseconds; a message sent before it does would go to the dead process.
      await rt.waitForLog((l) => l.msg.startsWith('Python process died'));
      const answer = (await rt.send(env({ n: 1 }))) as Array<{ payload: { pid: number } }>;
      const delay = Date.now() - killed;
      console.log(`# next message answered ${delay} ms after SIGKILL of one of two workers (3 s __init__)`);
      assert.equal(answer[0]!.payload.pid, survivor, 'served by the other worker');
      assert.ok(delay < 2500, `answered ${delay} ms after the kill`);
      assert.ok(rt.isReady(), 'ready while one worker restarts');
      // Now the other too: none can serve until a restart has loaded (3 s).
      process.kill(survivor, 'SIGKILL');
      await until('the ready file to go', () => !rt.isReady(), 5_000);
      const gone = Date.now();
      await until('the ready file to come back', () => rt.isReady(), 30_000);
      assert.ok(Date.now() - gone > 1500, 'not ready until a restarted worker loaded its 3 s __init__');
      await loads(rt, 3);
      const back = (await rt.send(env({ n: 2 }))) as Array<{ payload: { pid: number } }>;
      assert.ok(![p1, p2].includes(back[0]!.payload.pid));
    } finally {
      await rt.stop();
    }
  });

  it('recycling one worker leaves the other serving: the ready file stands and the next message does not wait', async () => {
    // Two messages per process: the first two go to worker 1 (a free worker 1 takes the oldest first),
    // which then recycles; the next goes to worker 2, which keeps serving (a one-message limit would
    // recycle it too right after its answer, and the ready file would rightly go while both load).
    const rt = await startRuntime({
      handler: 'pool.SlowInit.process',
      env: { ASYA_WORKERS: '2', POOL_INIT_SECONDS: '1.5', ASYA_WORKER_MAX_MESSAGES: '2' },
    });
    let withdrawn = false;
    const poll = setInterval(() => (withdrawn ||= !rt.isReady()), 5);
    try {
      await loads(rt, 2);
      type Answer = Array<{ payload: { pid: number } }>;
      const first = (await rt.send(env({ n: 1 }))) as Answer;
      const again = (await rt.send(env({ n: 2 }))) as Answer;
      assert.equal(again[0]!.payload.pid, first[0]!.payload.pid, 'worker 1 took both: it was free first');
      await rt.waitForLog((l) => /^recycling the Python process/.test(l.msg));
      const started = Date.now();
      const second = (await rt.send(env({ n: 3 }))) as Answer;
      const waited = Date.now() - started;
      assert.notEqual(second[0]!.payload.pid, first[0]!.payload.pid);
      assert.ok(waited < 1000, `the next message waited ${waited} ms`);
      await loads(rt, 3);
      clearInterval(poll);
      assert.equal(withdrawn, false, 'the ready file stood while the first worker recycled');
      const third = (await rt.send(env({ n: 4 }))) as Answer;
      assert.notEqual(third[0]!.payload.pid, first[0]!.payload.pid, 'the recycled worker serves with a new process');
    } finally {
      clearInterval(poll);
      await rt.stop();
    }
  });

  it('recycling under concurrent load takes one worker at a time: the ready file never goes', async () => {
    // Two workers sharing two clients' messages reach ASYA_WORKER_MAX_MESSAGES together; recycled at
    // once, neither could serve for a whole reload at every cycle.
    const rt = await startRuntime({
      handler: 'pool.SlowInit.process',
      env: { ASYA_WORKERS: '2', POOL_INIT_SECONDS: '0.3', ASYA_WORKER_MAX_MESSAGES: '3' },
    });
    let withdrawn = 0;
    const poll = setInterval(() => (withdrawn += rt.isReady() ? 0 : 1), 5);
    try {
      // Until three recycles have started (how many messages that takes depends on how long a reload
      // takes on this machine: a worker due for it serves on while the other reloads), at most 300 each.
      const recycles = () => rt.logs.filter((l) => /^recycling the Python process/.test(l.msg)).length;
      const client = async (c: number) => {
        const pids: number[] = [];
        for (let n = 0; n < 300 && (n < 30 || recycles() < 3); n++) {
          const answer = (await rt.send(env({ n: c * 100 + n, sleep: 0.05 }))) as Array<{
            payload: { n: number; pid: number };
          }>;
          assert.equal(answer[0]!.payload.n, c * 100 + n);
          pids.push(answer[0]!.payload.pid);
        }
        return pids;
      };
      const pids = (await Promise.all([client(1), client(2)])).flat();
      clearInterval(poll);
      assert.ok(recycles() >= 3, `recycled ${recycles()} times`);
      assert.ok(new Set(pids).size >= 3, 'answers came from a replacement process too');
      assert.equal(withdrawn, 0, 'the ready file stood throughout');
    } finally {
      clearInterval(poll);
      await rt.stop();
    }
  });

  it('SIGTERM: the messages in flight on both workers are answered, both close() hooks run, no Python process is left', async () => {
    const dir = tempDir();
    const marks = path.join(dir, 'closed');
    const rt = await startRuntime({
      handler: 'pool.SlowInit.process',
      env: { ASYA_WORKERS: '2', POOL_INIT_SECONDS: '0', POOL_CLOSE_MARKS: marks },
    });
    try {
      const pids = await loads(rt, 2);
      const procs = tree(rt.child.pid!);
      assert.ok(procs.length >= 4, `two reapers and two shims: ${JSON.stringify(procs)}`);
      const inFlight = [work(rt, { n: 1, sleep: 1 }), work(rt, { n: 2, sleep: 1 })];
      await Promise.all([rt.waitForHandlerLine('process 1 started'), rt.waitForHandlerLine('process 2 started')]);
      rt.child.kill('SIGTERM');
      const answered = await Promise.all(inFlight);
      assert.deepEqual(new Set(answered.map((w) => w.pid)), new Set(pids));
      assert.equal((await rt.exited).code, 0);
      const closed = fs.readFileSync(marks, 'utf8').trim().split('\n').sort();
      assert.deepEqual(closed, pids.map((p) => `closed ${p}`).sort());
      assert.deepEqual(survivors(procs), []);
    } finally {
      await rt.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGKILL of the supervisor: every worker tree goes with it', async () => {
    const rt = await startRuntime({ handler: 'pool.work', env: { ASYA_WORKERS: '3' } });
    try {
      await loads(rt, 3);
      const procs = tree(rt.child.pid!);
      assert.ok(procs.length >= 6, `three reapers and three shims: ${JSON.stringify(procs)}`);
      rt.child.kill('SIGKILL');
      await rt.exited;
      await until('every Python process to exit', () => survivors(procs).length === 0, 10_000);
    } finally {
      await rt.stop();
    }
  });

  it('a handler that loads in one worker but not in another stops the start: exit 4, naming the worker', async () => {
    const dir = tempDir();
    try {
      const r = await runToExit({
        handler: 'pool.OnlyOneFits.process',
        env: { ASYA_WORKERS: '2', POOL_SLOT_FILE: path.join(dir, 'slot') },
      });
      assert.equal(r.code, 4, r.text);
      assert.equal(r.readyFileSeen, false, 'readiness waits for every copy: the pod never took traffic');
      const fatals = r.logs.filter((l) => l.level === 'fatal');
      assert.equal(fatals.length, 1, r.text);
      const fatal = fatals[0];
      assert.match(
        fatal?.msg ?? '',
        /^FATAL: worker [12] of 2: cannot load handler "pool\.OnlyOneFits\.process": .*CUDA out of memory \(pretend\).* \(1 other worker\(s\) loaded it: 2 copies of the handler may not fit in memory or on the GPU; lower ASYA_WORKERS\)/s,
        r.text,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ASYA_WORKERS: an integer from 1 to 64; anything else stops the start with one line naming it (exit 2)', async () => {
    for (const bad of ['0', '65', '1.5', 'two', '-1', '2 workers']) {
      const parsed = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_WORKERS: bad });
      assert.ok(!parsed.ok);
      assert.deepEqual(parsed.errors, [
        `ASYA_WORKERS=${JSON.stringify(bad)} is not valid: expected an integer from 1 to 64`,
      ]);
    }
    for (const [text, n] of [
      ['', 1],
      ['1', 1],
      [' 4 ', 4],
      ['64', 64],
    ] as const) {
      const parsed = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_WORKERS: text });
      assert.ok(parsed.ok);
      assert.equal(parsed.config.workers, n);
    }
    const r = await runToExit({ handler: 'basic.echo', env: { ASYA_WORKERS: '0' } });
    assert.equal(r.code, 2);
    const fatal = r.logs.filter((l) => l.level === 'fatal');
    assert.deepEqual(
      fatal.map((l) => l.msg),
      ['FATAL: ASYA_WORKERS="0" is not valid: expected an integer from 1 to 64'],
    );
  });

  it('asya-runtime call runs one Python process whatever ASYA_WORKERS says', async () => {
    const r = await runNode([CLI, 'call', '--verbose', '--handler', 'pool.work', '--payloads-only', '{"n": 7}'], {
      env: { PYTHONPATH: HANDLERS, ASYA_WORKERS: '3' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).n, 7);
    assert.equal(r.stderr.match(/handler loaded/g)?.length, 1, r.stderr);
  });
});

describe('the pool with fake workers (dispatch and drain rules)', () => {
  const parsed = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_WORKERS: '2' });
  assert.ok(parsed.ok);
  const config = parsed.config;
  const log = createLogger('error', 'json');
  const job = (n: number) => fakeJob(env({ n }, { id: `m${n}` }));
  const servedBy = (body: string | null) => (JSON.parse(body!) as Array<{ payload: number }>)[0]!.payload;

  it('shutdown: a worker still restarting leaves the queue to the one serving; all are answered within the grace', async () => {
    FakeWorker.reset();
    const ready: boolean[] = [];
    // Worker 1's replacement takes 10 s to load: it is still loading at the shutdown.
    let spawns = 0;
    const pool = new Pool(
      config,
      DEFAULT_POLICY,
      () => () => new FakeWorker({ initMs: ++spawns > 2 ? 10_000 : 0, callMs: 40 }),
      log,
      {
        onReady: (up) => ready.push(up),
        onFatal: (err) => assert.fail(err.message),
      },
    );
    await pool.start();
    await until('both loaded', () => pool.serving === 2, 2_000);
    FakeWorker.spawned[0]!.terminate('crash');
    await until('one restarting', () => pool.serving === 1, 2_000);
    assert.equal(ready.at(-1), true, 'ready while one worker serves');
    const jobs = [1, 2, 3, 4, 5].map(job);
    for (const j of jobs) pool.submit(j.job);
    const { unfinished } = await pool.shutdown(5_000);
    assert.equal(unfinished, 0);
    const bodies = await Promise.all(jobs.map((j) => j.answer));
    assert.deepEqual(bodies.map(servedBy), [2, 2, 2, 2, 2], 'all served by the worker that was up');
    assert.equal(ready.at(-1), false);
  });

  it('dispatch: the oldest message goes to the first free worker; the queue counts those in the handlers', async () => {
    FakeWorker.reset();
    const pool = new Pool(config, DEFAULT_POLICY, () => () => new FakeWorker({ callMs: 60 }), log, {
      onReady: () => undefined,
      onFatal: (err) => assert.fail(err.message),
    });
    await pool.start();
    await until('both loaded', () => pool.serving === 2, 2_000);
    const order: number[] = [];
    const jobs = [0, 1, 2, 3].map(job);
    jobs.forEach((j, n) => void j.answer.then(() => order.push(n)));
    for (const j of jobs) pool.submit(j.job);
    assert.equal(pool.queued, 4, 'two in the handlers, two waiting');
    const bodies = await Promise.all(jobs.map((j) => j.answer));
    assert.deepEqual(new Set(bodies.map(servedBy)), new Set([1, 2]));
    assert.deepEqual(order.slice(0, 2).sort(), [0, 1], 'the first two answered first');
    assert.equal(pool.queued, 0);
    await pool.shutdown(100);
  });
});
