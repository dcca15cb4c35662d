/**
 * ASYA_PRELOAD: the handler is loaded once, in a template, and every worker (every replacement too) is
 * a fork of it. Loads counted, pids compared, replacement timed from the kill, the template killed,
 * the supervisor killed, CUDA refused, threads named: real supervisor, real Python, real socket.
 * Processes are found by a tag in their environment, wherever they sit in the tree.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  asError,
  CLI,
  env,
  HANDLERS,
  type LogLine,
  processesWithEnv,
  pyenvPython,
  type Runtime,
  runNode,
  runToExit,
  startRuntime,
  TEST_VENV_PYTHON,
  until,
} from './helpers.js';

interface Served {
  pid: number;
  loaded_in: number;
  n: number | null;
  total: number | null;
}

/** Processes whose environment carries `tag` (every Python process of one runtime). */
const tagged = (tag: string) => processesWithEnv('PRELOAD_TAG', tag);

function marks(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

async function serve(rt: Runtime, payload: Record<string, unknown>): Promise<Served> {
  const answer = (await rt.send(env(payload))) as Array<{ payload: Served }>;
  assert.equal(answer.length, 1, JSON.stringify(answer));
  return answer[0]!.payload;
}

const templateLines = (rt: Runtime): LogLine[] => rt.logs.filter((l) => String(l.msg).startsWith('template loaded'));

async function preloaded(extra: Record<string, string> = {}, python?: string) {
  const tag = randomUUID();
  const dir = fs.mkdtempSync('/tmp/asya-preload-');
  const files = { inits: path.join(dir, 'inits'), closes: path.join(dir, 'closes') };
  const rt = await startRuntime({
    handler: 'preload.Model.process',
    env: {
      ASYA_PRELOAD: 'true',
      PRELOAD_TAG: tag,
      PRELOAD_INIT_MARKS: files.inits,
      PRELOAD_CLOSE_MARKS: files.closes,
      ...(python ? { ASYA_PYTHONEXECUTABLE: python } : {}),
      ...extra,
    },
  });
  const template = (await rt.waitForLog((l) => String(l.msg).startsWith('template loaded'))).python_pid as number;
  return { rt, tag, files, template, dir };
}

const versions = [
  ['3.7', pyenvPython('3.7')],
  ['3.13', pyenvPython('3.13')],
  ['default', null],
] as const;

describe('ASYA_PRELOAD: workers forked from one loaded template', () => {
  for (const [name, python] of versions) {
    it(`loads once and serves from forks, close() once per worker, nothing left after SIGTERM (Python ${name})`, async (t) => {
      if (name !== 'default' && python === null) return t.skip(`Python ${name} not installed`);
      const { rt, tag, files, template } = await preloaded({ ASYA_WORKERS: '2' }, python ?? undefined);
      const served = await Promise.all([1, 2, 3, 4].map((n) => serve(rt, { n, sleep: 0.2 })));
      const workers = new Set(served.map((s) => s.pid));
      assert.equal(workers.size, 2, `two workers served: ${JSON.stringify(served)}`);
      assert.ok(!workers.has(template), 'the template never handles a message');
      for (const s of served) assert.equal(s.loaded_in, template, 'the model was built in the template');
      assert.deepEqual(marks(files.inits), [`init ${template}`], '__init__ ran once, in the template');
      const { code } = await rt.stop();
      assert.equal(code, 0);
      // The workers that served, and the spare forked for the next replacement (a worker too).
      const closed = marks(files.closes);
      assert.equal(new Set(closed).size, closed.length, `close() ran once per process: ${closed}`);
      for (const pid of workers) assert.ok(closed.includes(`closed ${pid}`), `close() ran in worker ${pid}: ${closed}`);
      assert.ok(!closed.includes(`closed ${template}`), 'close() never ran in the template');
      assert.ok(closed.length <= workers.size + 1, `close() ran in the workers and the spare only: ${closed}`);
      assert.deepEqual(tagged(tag), [], 'no Python process left');
    });
  }

  it('replaces a worker killed while idle in well under a load, and the message that waited is answered', async () => {
    const { rt, files, template } = await preloaded({ PRELOAD_INIT_SECONDS: '3' });
    const before = await serve(rt, { n: 1 });
    const killed = Date.now();
    process.kill(before.pid, 'SIGKILL');
    // Sent once the death is seen: a message sent before that may reach the dead process and is answered worker_crashed.
    await rt.waitForLog((l) => String(l.msg).startsWith('Python process died'));
    const after = await serve(rt, { n: 2 });
    const ms = Date.now() - killed;
    assert.notEqual(after.pid, before.pid);
    assert.equal(after.loaded_in, template);
    // The target is 0.3 s on a quiet machine (docs/performance.md); 5x for a loaded one, and still far below the 3 s load.
    assert.ok(ms < 1500, `answered ${ms} ms after the kill`);
    assert.equal(marks(files.inits).length, 1, '__init__ did not run again');
    assert.equal(templateLines(rt).length, 1);
    await rt.stop();
  });

  it('after a hard time-limit kill, the next message is served by a fresh fork at once', async () => {
    const { rt, files } = await preloaded({
      PRELOAD_INIT_SECONDS: '3',
      ASYA_HANDLER_TIMEOUT: '0.3',
      ASYA_HANDLER_KILL_GRACE: '0.2',
    });
    const stuck = rt.send(env({ stuck: true }));
    const next = serve(rt, { n: 2 });
    const error = asError(await stuck);
    assert.equal(error.error, 'handler_timeout', JSON.stringify(error));
    const answeredAt = Date.now();
    const served = await next;
    assert.ok(Date.now() - answeredAt < 1500, `the next message took ${Date.now() - answeredAt} ms after the kill`);
    assert.equal(typeof served.pid, 'number');
    assert.equal(marks(files.inits).length, 1);
    await rt.stop();
  });

  it('recycling every 10 messages forks, never loads again', async () => {
    const { rt, files, template } = await preloaded({ ASYA_WORKER_MAX_MESSAGES: '10' });
    const pids = new Set<number>();
    for (let n = 0; n < 60; n++) pids.add((await serve(rt, { n })).pid);
    assert.ok(pids.size >= 6, `at least 6 workers served 60 messages: ${pids.size}`);
    assert.deepEqual(marks(files.inits), [`init ${template}`]);
    await rt.stop();
    // Every worker that served closes once; so may the one forked ahead (the spare, or the replacement
    // of the last recycled worker), which never served; never the template, never a worker twice.
    const closed = marks(files.closes).map((line) => Number(line.replace('closed ', '')));
    assert.equal(new Set(closed).size, closed.length, `a worker closed twice: ${closed}`);
    for (const pid of pids) assert.ok(closed.includes(pid), `worker ${pid} served and never closed: ${closed}`);
    assert.ok(!closed.includes(template), 'the template ran close()');
    assert.ok(closed.length <= pids.size + 2, `closes from workers that never served: ${closed}`);
  });

  it('the template killed: readiness withdrawn, loaded again, the waiting message answered, nothing orphaned', async () => {
    const { rt, tag, files, template } = await preloaded({ PRELOAD_INIT_SECONDS: '1' });
    const first = await serve(rt, { n: 1 });
    process.kill(template, 'SIGKILL');
    await until('the ready file to go', () => !rt.isReady());
    const waiting = serve(rt, { n: 2 });
    const served = await waiting;
    assert.equal(templateLines(rt).length, 2, 'a second template loaded');
    assert.notEqual(served.loaded_in, template);
    assert.notEqual(served.pid, first.pid, 'the old worker went with its template');
    assert.equal(marks(files.inits).length, 2);
    await until('readiness back', () => rt.isReady());
    assert.ok(rt.logs.some((l) => l.level === 'error' && String(l.msg).startsWith('the template process died')));
    const alive = tagged(tag).map((p) => p.pid);
    assert.ok(!alive.includes(first.pid) && !alive.includes(template), `old processes gone: ${alive}`);
    const { code } = await rt.stop();
    assert.equal(code, 0);
    assert.deepEqual(tagged(tag), []);
  });

  it('a SIGKILLed supervisor leaves no Python process (template, porters, workers, reapers)', async () => {
    const { rt, tag } = await preloaded({ ASYA_WORKERS: '3' });
    await Promise.all([1, 2, 3].map((n) => serve(rt, { n, sleep: 0.1 })));
    const before = tagged(tag);
    assert.ok(
      before.length >= 3 * 3 + 2,
      `template, its reaper and per worker a porter, reaper and worker: ${JSON.stringify(before)}`,
    );
    rt.child.kill('SIGKILL');
    await rt.exited;
    await until('every Python process gone', () => tagged(tag).length === 0, 10_000);
    fs.rmSync(rt.dir, { recursive: true, force: true });
  });

  it('refuses a template in which CUDA was initialised: one FATAL line with both ways out, no ready file', async () => {
    const { code, logs, readyFileSeen } = await runToExit({
      handler: 'preload.OnGpu.process',
      env: { ASYA_PRELOAD: 'true' },
      pythonPath: [path.join(HANDLERS, 'fake_cuda')],
    });
    const fatal = logs.filter((l) => l.level === 'fatal');
    assert.equal(fatal.length, 1, JSON.stringify(fatal));
    const text = String(fatal[0]!.msg);
    assert.match(text, /CUDA was initialised/);
    assert.match(text, /lazily, in the first call/);
    assert.match(text, /unset ASYA_PRELOAD/);
    assert.notEqual(code, 0);
    assert.equal(readyFileSeen, false);
  });

  it('check with ASYA_PRELOAD=true refuses the CUDA template before deploying; without it, passes', async () => {
    const env = { PYTHONPATH: [path.join(HANDLERS, 'fake_cuda'), HANDLERS].join(':') };
    const refused = await runNode([CLI, 'check', '--handler', 'preload.OnGpu.process'], {
      env: { ...env, ASYA_PRELOAD: 'true' },
    });
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /CUDA was initialised/);
    const passed = await runNode([CLI, 'check', '--handler', 'preload.OnGpu.process'], { env });
    assert.equal(passed.code, 0, passed.stderr);
  });

  it('the same handler without ASYA_PRELOAD loads on the stand-in GPU as before', async () => {
    const rt = await startRuntime({ handler: 'preload.OnGpu.process', pythonPath: [path.join(HANDLERS, 'fake_cuda')] });
    const [answer] = (await rt.send(env({ a: 1 }))) as Array<{ payload: unknown }>;
    assert.deepEqual(answer?.payload, { a: 1 });
    await rt.stop();
  });

  it('names the threads alive in the template in one WARNING, and forks taken while one holds locks still serve', async () => {
    const { rt, files } = await preloaded({ PRELOAD_THREAD: '1', ASYA_WORKER_MAX_MESSAGES: '1' });
    const warnings = rt.logs.filter(
      (l) => l.level === 'warn' && String(l.msg).includes('threads running in the template'),
    );
    assert.equal(warnings.length, 1);
    assert.deepEqual(warnings[0]!.threads, ['model-prefetch']);
    for (let n = 0; n < 15; n++) {
      const served = await serve(rt, { n, talk: true });
      await rt.waitForLog((l) => l.msg === `printed by ${served.pid}`);
      await rt.waitForLog((l) => l.msg === `logged by ${served.pid}`);
    }
    assert.equal(marks(files.inits).length, 1);
    await rt.stop();
  });

  it("loading that ignores SIGCHLD, handles SIGTERM and keeps files: forks serve, keep the handler's settings, and the template's exit functions run once, in it", async () => {
    const dir = fs.mkdtempSync('/tmp/asya-preload-');
    const inits = path.join(dir, 'inits');
    const rt = await startRuntime({
      handler: 'preload.Particular.process',
      env: { ASYA_PRELOAD: 'true', ASYA_WORKER_MAX_MESSAGES: '3', PRELOAD_INIT_MARKS: inits },
    });
    const served: Array<Record<string, unknown>> = [];
    for (let n = 0; n < 12; n++)
      served.push(((await rt.send(env({ n }))) as Array<{ payload: Record<string, unknown> }>)[0]!.payload);
    for (const s of served) {
      assert.equal(s.size, 100, `the template's temporary directory outlives recycled workers: ${JSON.stringify(s)}`);
      assert.equal(s.sigchld_ignored, true, "the handler's SIGCHLD setting is the worker's");
      assert.equal(s.sigterm_handler, 'on_term', "the handler's SIGTERM handler is the worker's");
    }
    assert.ok(new Set(served.map((s) => s.pid)).size >= 4, 'recycled');
    const lines = marks(inits);
    assert.equal(lines.length, 1, `one load: ${lines}`);
    // The worker's reaper holds none of what loading opened; the worker does.
    const worker = served.at(-1)!.pid as number;
    const reaper = Number(fs.readFileSync(`/proc/${worker}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    const held = (pid: number) =>
      fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try {
          return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      });
    assert.ok(
      held(worker).some((f) => f.endsWith('weights.bin')),
      'the worker has the file loading opened',
    );
    assert.ok(!held(reaper).some((f) => f.endsWith('weights.bin')), `its reaper does not: ${held(reaper)}`);
    const { code } = await rt.stop();
    assert.equal(code, 0);
    const scratch = lines[0]!.split(' ')[2]!;
    assert.equal(fs.existsSync(scratch), false, "the template's TemporaryDirectory was cleaned up at its exit");
    assert.ok(!rt.logs.some((l) => /corrupted channel|Python process died/.test(String(l.msg))), 'no crash');
  });

  it('the template killed again and again: its workers never run close() or report a corrupted channel; a killed spare is replaced', async () => {
    const { rt, files, tag } = await preloaded({ ASYA_WORKERS: '2' });
    for (let round = 1; round <= 4; round++) {
      const template = templateLines(rt).at(-1)!.python_pid as number;
      await Promise.all([serve(rt, { n: 1 }), serve(rt, { n: 2 })]);
      process.kill(template, 'SIGKILL');
      await until(`template ${round + 1}`, () => templateLines(rt).length === round + 1);
      await Promise.all([serve(rt, { n: 1 }), serve(rt, { n: 2 })]);
    }
    assert.deepEqual(marks(files.closes), [], 'close() never ran in a worker killed with its template');
    // Two workers and the spare: a porter each, no more (a worker forked after a template died under its
    // request once ran on beside its replacement).
    const porters = () => tagged(tag).filter((p) => p.comm === 'asya-porter').length;
    await until('two workers and a spare', () => porters() === 3);
    await Promise.all([1, 2, 3, 4].map((n) => serve(rt, { n })));
    assert.equal(porters(), 3);
    assert.ok(!rt.logs.some((l) => String(l.msg).includes('corrupted channel')));
    const spares = () => rt.logs.filter((l) => l.msg === 'spare worker forked');
    // The spare of the last template (the ones before died with theirs), still a spare: one a slot took
    // at once (a worker's restart) logs its lines with the slot's `worker` and is no spare any more.
    const since = rt.logs.lastIndexOf(templateLines(rt).at(-1)!);
    const inSlot = (pid: unknown) => rt.logs.some((l) => l.worker !== undefined && l.python_pid === pid);
    const spare = (
      await until('a spare no slot has taken', () =>
        rt.logs
          .slice(since)
          .filter((l) => l.msg === 'spare worker forked' && !inSlot(l.python_pid))
          .at(-1),
      )
    ).python_pid as number;
    const count = spares().length;
    process.kill(spare, 'SIGKILL');
    await rt.waitForLog((l) => String(l.msg).startsWith('the spare worker died'));
    await until('another spare', () => spares().length > count);
    await rt.stop();
    assert.deepEqual(tagged(tag), []);
  });

  it('a scikit-learn estimator fitted in the template answers from recycled forks exactly as a spawned worker does', async (t) => {
    if (!fs.existsSync(TEST_VENV_PYTHON)) return t.skip('no test venv with scikit-learn');
    const sklearn = path.join(HANDLERS, '..', '..', 'examples', 'sklearn');
    const texts = [
      'great service, loved it',
      'rude staff and slow delivery',
      'the order was really it',
      'amazing refund',
    ];
    const answers = async (extra: Record<string, string>) => {
      const rt = await startRuntime({
        handler: 'sentiment.SentimentClassifier.process',
        pythonPath: [sklearn],
        env: { ASYA_PYTHONEXECUTABLE: TEST_VENV_PYTHON, ...extra },
      });
      const got: unknown[] = [];
      for (let round = 0; round < 3; round++) {
        for (const text of texts) got.push(((await rt.send(env({ text }))) as Array<{ payload: unknown }>)[0]?.payload);
      }
      const trained = rt.logs.filter((l) => String(l.msg).startsWith('trained on')).length;
      const forked = rt.logs.filter((l) => l.msg === 'handler loaded' && l.forked === true).length;
      assert.equal((await rt.stop()).code, 0);
      return { got, trained, forked };
    };
    const spawned = await answers({});
    const forks = await answers({ ASYA_PRELOAD: 'true', ASYA_WORKERS: '2', ASYA_WORKER_MAX_MESSAGES: '3' });
    assert.deepEqual(forks.got, spawned.got, 'the same predictions, to the last digit');
    assert.equal(forks.trained, 1, 'fitted once, in the template');
    assert.ok(forks.forked >= 3, `served by forks, recycled ones among them: ${forks.forked}`);
  });

  it('shares the model: 3 workers and the template hold far less than 3 copies (PSS)', async (t) => {
    if (!fs.existsSync(TEST_VENV_PYTHON)) return t.skip('no test venv with numpy');
    const mb = 200;
    const { rt, tag } = await preloaded({ PRELOAD_MODEL_MB: String(mb), ASYA_WORKERS: '3' }, TEST_VENV_PYTHON);
    const served = await Promise.all([1, 2, 3].map((n) => serve(rt, { n, sleep: 0.2 })));
    assert.equal(new Set(served.map((s) => s.pid)).size, 3);
    const pss = tagged(tag).reduce((sum, p) => sum + pssKib(p.pid), 0) / 1024;
    // One spawned worker holds the model and ~30 MiB of interpreter and numpy; 3 spawned hold ~3x that.
    // The bound: all of them together at most 1.5x one spawned worker (the bench measures both).
    assert.ok(pss < (mb + 30) * 1.5, `all Python processes together hold ${pss.toFixed(0)} MiB PSS`);
    await rt.stop();
  });
});

function pssKib(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
