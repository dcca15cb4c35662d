/**
 * `asya-runtime call` for the inner loop: the REPORT line after each answer, --payloads-only, and
 * --watch (edit the handler however an editor or a tool saves it, see the new answer; a handler that
 * does not load yet is waited for; Ctrl-C stops it and leaves nothing running).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CLI, HANDLERS, jsonLines, runNode, tempDir } from './helpers.js';
import { SAVE_KINDS, seededSaves, watchCall } from './watch-saves.js';

const REPORT = /^REPORT {2}duration: (\d+\.\d\d) ms(?: {2}init duration: (\d+) ms)? {2}peak RSS: (\d+\.\d) MiB$/;

const reports = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('REPORT'))
    .map((l) => {
      const m = REPORT.exec(l);
      assert.ok(m, `not a REPORT line: ${l}`);
      return { duration: Number(m[1]), init: m[2] === undefined ? null : Number(m[2]), peakMiB: Number(m[3]) };
    });

describe('asya-runtime call: the REPORT line', () => {
  it('after each answer: duration, init duration on the first call only, peak RSS of the Python process', async () => {
    const r = await runNode(
      // --verbose: the 'handler loaded' line the load time is compared with
      [
        CLI,
        'call',
        '--verbose',
        '--handler',
        'classes.Counter.process',
        ...['{}', '{}', '{}'].flatMap((p) => ['--payload', p]),
      ],
      {
        env: { PYTHONPATH: HANDLERS },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(jsonLines(r.stdout).length, 3, 'stdout has the answers only');
    const got = reports(r.stderr);
    assert.equal(got.length, 3, r.stderr);
    assert.deepEqual(
      got.map((g) => g.init !== null),
      [true, false, false],
    );
    const loaded = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; load_ms?: number })
      .find((l) => l.msg === 'handler loaded');
    assert.equal(got[0]?.init, loaded?.load_ms, 'init duration is the load time the shim measured');
    for (const g of got) {
      assert.ok(g.duration > 0, `duration ${g.duration}`);
      assert.ok(g.peakMiB > 1, `peak RSS ${g.peakMiB} MiB`);
    }
  });

  it('--payloads-only prints each output payload and no REPORT line', async () => {
    const r = await runNode([CLI, 'call', '--handler', 'basic.fanout', '--payloads-only', '{"n": 2}'], {
      env: { PYTHONPATH: HANDLERS },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), [{ i: 0 }, { i: 1 }]);
    assert.doesNotMatch(r.stderr, /^REPORT/m);
    const failed = await runNode([CLI, 'call', '--handler', 'basic.raise_value', '--payloads-only', '{}'], {
      env: { PYTHONPATH: HANDLERS },
    });
    assert.equal(failed.code, 1);
    assert.equal(
      (jsonLines(failed.stdout)[0] as { error: string }).error,
      'processing_error',
      'an error is printed whole',
    );
  });
});

/** Lines of `text` that start with `prefix`. */
const lines = (text: string, prefix: string) => text.split('\n').filter((l) => l.startsWith(prefix));

describe('asya-runtime call --watch', () => {
  for (const preload of [false, true]) {
    it(`reloads the handler when its .py file changes, sends the messages again; Ctrl-C exits 0 and leaves nothing running${preload ? ' (ASYA_PRELOAD: a new template each time)' : ''}`, async () => {
      const dir = tempDir();
      const module = path.join(dir, 'live_model.py');
      fs.mkdirSync(path.join(dir, 'lib'));
      fs.writeFileSync(path.join(dir, 'lib', 'helper.py'), 'FACTOR = 1\n');
      fs.writeFileSync(
        module,
        'from lib.helper import FACTOR\n\ndef predict(payload):\n    return {"version": 1, "x": payload["x"] * FACTOR}\n',
      );
      const run = watchCall(dir, ['--handler', 'live_model.predict', '{"x": 2}'], {
        env: preload ? { ASYA_PRELOAD: 'true' } : {},
      });
      await run.stoppedAfter(async () => {
        await run.waitFor(
          'the watch line and the first answer',
          () => /^WATCH {2}watching \. for \.py changes/m.test(run.stderr()) && run.answers().length === 1,
        );
        assert.deepEqual(run.answers(), [{ version: 1, x: 2 }]);
        await run.waitFor('the first REPORT', () => reports(run.stderr()).length === 1);
        assert.equal(typeof reports(run.stderr())[0]?.init, 'number', 'the first REPORT has the load time');

        fs.writeFileSync(
          module,
          'from lib.helper import FACTOR\n\ndef predict(payload):\n    return {"version": 2, "x": payload["x"] * FACTOR}\n',
        );
        await run.waitFor('the answer of the edited handler', () => run.answers().length === 2);
        assert.deepEqual(run.answers()[1], { version: 2, x: 2 });
        assert.match(run.stderr(), /^RELOAD {2}live_model\.py changed: restarting the Python process$/m);
        assert.match(run.stderr(), /^RELOAD {2}handler loaded in \d+ ms \(pid \d+\)$/m);
        // the REPORT follows the answer on the other stream: it may arrive a moment later
        await run.waitFor('the second REPORT', () => reports(run.stderr()).length === 2);
        const got = reports(run.stderr());
        assert.notEqual(got[1]?.init, null, 'a reloaded process reports its load time on its first call');

        // a module it imports, in a subdirectory: a reload too
        fs.writeFileSync(path.join(dir, 'lib', 'helper.py'), 'FACTOR = 100\n');
        await run.waitFor('the answer with the edited helper', () => run.answers().length === 3);
        assert.deepEqual(run.answers()[2], { version: 2, x: 200 });

        // a broken edit is reported, the watch goes on, the fix is picked up
        fs.writeFileSync(module, 'def predict(payload):\n    return {"version": \n');
        await run.waitFor('the failed reload', () => /^RELOAD {2}waiting for the next change$/m.test(run.stderr()));
        assert.match(run.stderr(), /^RELOAD {2}failed: cannot load handler "live_model\.predict".*SyntaxError/m);
        fs.writeFileSync(module, 'def predict(payload):\n    return {"version": 3333}\n');
        await run.waitFor('the answer of the fixed handler', () => run.answers().length === 4);
        assert.deepEqual(run.answers()[3], { version: 3333 });
      });
    });
  }

  it('a first load that fails keeps watching, says why each time, and loads the handler once it is fixed', async () => {
    const dir = tempDir();
    const module = path.join(dir, 'live.py');
    const run = watchCall(dir, ['--handler', 'live.predict', '{}']);
    const failures = () => lines(run.stderr(), 'WATCH  the handler did not load').length;
    await run.stoppedAfter(async () => {
      // no module file at all yet: the current directory is watched
      await run.waitFor('the first failure', () => failures() === 1);
      assert.match(run.stderr(), /no module found for handler 'live\.predict'/);
      assert.match(run.stderr(), /^WATCH {2}the handler did not load \(above\): watching \. for \.py changes/m);
      fs.writeFileSync(module, 'def predict(payload:\n');
      await run.waitFor('the syntax error', () => failures() === 2);
      assert.match(run.stderr(), /^RELOAD {2}live\.py changed: loading the handler again$/m);
      assert.match(run.stderr(), /SyntaxError/);
      fs.writeFileSync(module, 'import helper\n\ndef predict(payload):\n    return {"version": helper.VERSION}\n');
      await run.waitFor('the import error', () => failures() === 3);
      assert.match(run.stderr(), /No module named 'helper'/);
      fs.writeFileSync(module, 'def predicted(payload):\n    return {}\n');
      await run.waitFor('the missing function', () => failures() === 4);
      assert.match(run.stderr(), /has no attribute 'predict'/);
      assert.equal(run.answers().length, 0, 'nothing was sent to a handler that did not load');
      // the fix is a new module next to it, written after the handler: that alone starts the runtime
      fs.writeFileSync(module, 'import helper\n\ndef predict(payload):\n    return {"version": helper.VERSION}\n');
      await run.waitFor('the failure that waits for helper.py', () => failures() === 5);
      fs.writeFileSync(path.join(dir, 'helper.py'), 'VERSION = 1\n');
      await run.waitFor('the first answer', () => run.answers().length === 1);
      assert.deepEqual(run.answers(), [{ version: 1 }]);
      assert.match(run.stderr(), /^RELOAD {2}handler loaded in \d+ ms \(pid \d+\)$/m);
      assert.match(run.stderr(), /^WATCH {2}watching \. for \.py changes; Ctrl-C to stop$/m);
      await run.waitFor('the first REPORT', () => reports(run.stderr()).length === 1);
      assert.equal(typeof reports(run.stderr())[0]?.init, 'number', 'the first REPORT has the load time');
      // from then on, as after a first load that worked
      fs.writeFileSync(path.join(dir, 'helper.py'), 'VERSION = 2\n');
      await run.waitFor('the reloaded answer', () => run.answers().length === 2);
      assert.deepEqual(run.answers()[1], { version: 2 });
    });
  });

  it('a save while a message or a load never ends stops that Python process and starts afresh', async () => {
    const dir = tempDir();
    const module = path.join(dir, 'stuck.py');
    const looping = (where: string) =>
      where === 'call'
        ? 'import time\n\ndef predict(payload):\n    while True:\n        time.sleep(0.05)\n'
        : 'import time\nwhile True:\n    time.sleep(0.05)\n';
    const fixed = (v: number) => `def predict(payload):\n    return {"version": ${v}}\n`;
    // the first load never ends: a save starts another
    fs.writeFileSync(module, looping('import'));
    const run = watchCall(dir, ['--handler', 'stuck.predict', '{}']);
    await run.stoppedAfter(async () => {
      await run.waitFor('the loading line', () =>
        /^WATCH {2}loading stuck\.predict: watching \. for \.py changes meanwhile/m.test(run.stderr()),
      );
      fs.writeFileSync(module, fixed(1));
      await run.waitFor('the fixed answer', () => run.answers().length === 1);
      assert.deepEqual(run.answers(), [{ version: 1 }]);
      // the message never ends: a save stops it
      fs.writeFileSync(module, looping('call'));
      await run.waitFor('the reload into the loop', () => lines(run.stderr(), 'RELOAD  handler loaded').length === 1);
      fs.writeFileSync(module, fixed(2));
      await run.waitFor('the answer after the stuck message', () => run.answers().length === 2);
      assert.deepEqual(run.answers()[1], { version: 2 });
      assert.match(run.stderr(), /^RELOAD {2}stuck\.py changed: stopped the Python process at work, starting afresh$/m);
      // a reload whose import never ends: a save stops it too
      fs.writeFileSync(module, looping('import'));
      await run.waitFor(
        'the reload into the stuck import',
        () => run.stderr().split('RELOAD  stuck.py changed: restarting the Python process').length === 3,
      );
      fs.writeFileSync(module, fixed(3));
      await run.waitFor('the answer after the stuck import', () => run.answers().length === 3);
      assert.deepEqual(run.answers()[2], { version: 3 });
    });
  });

  it('a reload whose close() never returns does not hold up the next save, nor Ctrl-C', async () => {
    const dir = tempDir();
    const module = path.join(dir, 'closing.py');
    const source = (v: number) =>
      `import time\n\nclass H:\n    def handle(self, payload):\n        return {"version": ${v}}\n\n    def close(self):\n        time.sleep(1000)\n`;
    fs.writeFileSync(module, source(1));
    // ASYA_SHUTDOWN_TIMEOUT is close()'s time on a reload: long here, so waiting it out would show
    const run = watchCall(dir, ['--handler', 'closing.H.handle', '{}'], { env: { ASYA_SHUTDOWN_TIMEOUT: '60' } });
    await run.waitFor('the first answer', () => run.answers().length === 1);
    fs.writeFileSync(module, source(2)); // the reload: close() hangs
    await run.waitFor('the reload under way', () => /^RELOAD {2}closing\.py changed: restarting/m.test(run.stderr()));
    const saved = Date.now();
    fs.writeFileSync(module, source(3)); // a save while it hangs
    await run.waitFor(
      'the answer after the hanging close()',
      () => run.answers().some((a) => a?.version === 3),
      20_000,
    );
    assert.ok(Date.now() - saved < 15_000, `${Date.now() - saved} ms from the save to its answer`);
    fs.writeFileSync(module, source(4)); // another reload, close() hangs again: Ctrl-C now
    await run.waitFor(
      'the second reload under way',
      () => run.stderr().split('RELOAD  closing.py changed: restarting the Python process').length === 3,
    );
    const pressed = Date.now();
    assert.equal(await run.interrupt(), 0, run.stderr());
    assert.ok(Date.now() - pressed < 10_000, `exited ${Date.now() - pressed} ms after Ctrl-C`);
  });

  it('watches the import path entry the module came from, above namespace packages; a replaced root is watched again', async () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'app', 'handlers'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'app', 'util.py'), 'SCALE = 1\n');
    const handler = 'from app import util\n\ndef process(payload):\n    return {"scale": util.SCALE}\n';
    fs.writeFileSync(path.join(dir, 'app', 'handlers', 'h.py'), handler);
    const run = watchCall(dir, ['--handler', 'app.handlers.h.process', '{}']);
    await run.stoppedAfter(async () => {
      await run.waitFor('the first answer', () => run.answers().length === 1);
      assert.match(
        run.stderr(),
        /^WATCH {2}watching \. for \.py changes/m,
        'the directory above app/ (no __init__.py)',
      );
      fs.writeFileSync(path.join(dir, 'app', 'util.py'), 'SCALE = 2\n');
      await run.waitFor('the answer after a sibling package changed', () => run.answers().length === 2);
      assert.deepEqual(run.answers()[1], { scale: 2 });
    });

    // a root on PYTHONPATH deleted and made again (rm -rf; git checkout), then edited
    const src = path.join(dir, 'src');
    const work = path.join(dir, 'work');
    fs.mkdirSync(src);
    fs.mkdirSync(work);
    fs.writeFileSync(path.join(src, 'm.py'), 'def process(payload):\n    return {"v": 1}\n');
    const again = watchCall(work, ['--handler', 'm.process', '{}'], { env: { PYTHONPATH: src } });
    await again.stoppedAfter(async () => {
      await again.waitFor('the first answer', () => again.answers().length === 1);
      fs.rmSync(src, { recursive: true });
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, 'm.py'), 'def process(payload):\n    return {"v": 2}\n');
      await again.waitFor('the answer from the new directory', () => again.answers().some((a) => a?.v === 2));
      fs.writeFileSync(path.join(src, 'm.py'), 'def process(payload):\n    return {"v": 3}\n');
      await again.waitFor('an edit in the new directory', () => again.answers().some((a) => a?.v === 3));
    });
  });

  it('Ctrl-C while waiting for a handler that does not load exits 0 and leaves nothing running', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'live.py'), 'raise RuntimeError("not yet")\n');
    const run = watchCall(dir, ['--handler', 'live.predict', '{}']);
    await run.waitFor('the failure', () => lines(run.stderr(), 'WATCH  the handler did not load').length === 1);
    assert.match(run.stderr(), /RuntimeError: not yet/);
    assert.equal(await run.interrupt(), 0, run.stderr());
  });

  it('what a save cannot fix still ends it: no Python is exit 3, as without --watch', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'live.py'), 'def predict(payload):\n    return {}\n');
    const r = await runNode(
      [CLI, 'call', '--watch', '--handler', 'live.predict', '--python', path.join(dir, 'no-python'), '{}'],
      {
        cwd: dir,
      },
    );
    assert.equal(r.code, 3, r.stderr);
    assert.doesNotMatch(r.stderr, /^WATCH {2}(the handler did not load|watching)/m, 'not waiting for a change');
  });

  it('watches the source directories only: not a virtualenv, site-packages, .git, node_modules, __pycache__ or hidden ones', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'live.py'), 'from lib import helper\n\ndef predict(payload):\n    return {}\n');
    const sources = ['lib', 'lib/inner'];
    for (const d of sources) fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.writeFileSync(path.join(dir, 'lib', 'helper.py'), '');
    // What a project directory also holds: each of these trees has many directories, none of them watched.
    const many = (root: string, n: number) => {
      for (let i = 0; i < n; i++) fs.mkdirSync(path.join(dir, root, `d${i}`, 'sub'), { recursive: true });
    };
    many('venv/lib/python3.11/site-packages', 200); // by its name
    many('my-env/lib/python3.11/site-packages', 200); // by its pyvenv.cfg
    fs.writeFileSync(path.join(dir, 'my-env', 'pyvenv.cfg'), 'home = /usr/bin\n');
    many('conda-env/pkgs', 50); // a conda environment, by its conda-meta
    fs.mkdirSync(path.join(dir, 'conda-env', 'conda-meta'));
    many('.git/objects', 200);
    many('node_modules', 100);
    many('.venv/lib', 50);
    many('lib/__pycache__', 5);
    many('.mypy_cache', 20);
    const run = watchCall(dir, ['--handler', 'live.predict', '--log-level', 'DEBUG', '{}']);
    await run.stoppedAfter(async () => {
      await run.waitFor('the first answer', () => run.answers().length === 1);
      const counts = lines(run.stderr(), '{')
        .map((l) => JSON.parse(l) as { msg: string; directories?: number })
        .filter((l) => /^watch: watching \d+ director(y|ies)$/.test(l.msg));
      assert.ok(counts.length > 0, 'a DEBUG line gives the count');
      assert.equal(counts.at(-1)?.directories, 1 + sources.length, 'the directory, lib and lib/inner');
      // What the kernel holds for this process: its inotify watches (the runtime's socket directory is one
      // more, and the root's parent, watched for the root's own name, one more).
      assert.ok(inotifyWatches(run.pid) <= 1 + sources.length + 2, `${inotifyWatches(run.pid)} inotify watches`);
      // a new directory under a watched one is watched, and a change in it reloads
      fs.mkdirSync(path.join(dir, 'lib', 'inner', 'deeper'));
      await run.waitFor('the new directory', () => /"added":"[^"]*deeper"/.test(run.stderr()));
      fs.writeFileSync(path.join(dir, 'lib', 'inner', 'deeper', 'x.py'), '');
      await run.waitFor('the reload', () => run.answers().length === 2);
    });
  });
});

/** How many inotify watches `pid` holds (each `inotify wd:` line of its descriptors' fdinfo). */
function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      n += fs
        .readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('inotify wd:')).length;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('asya-runtime call --watch sees every save (seeded sequences)', () => {
  it(`node dist/cli.js: ${SAVE_KINDS}`, (t) => seededSaves(t, 7));
  // the packaged executable: in package.test.ts, which builds it
});
