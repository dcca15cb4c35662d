/**
 * `asya-runtime call` for the inner loop: the REPORT line after each answer, --payloads-only, and
 * --watch (edit the handler, see the new answer; Ctrl-C stops it and leaves nothing running).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CLI, HANDLERS, jsonLines, processesWithEnv, runNode, tempDir, until } from './helpers.js';

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

describe('asya-runtime call --watch', () => {
  for (const preload of [false, true]) {
    it(`reloads the handler when its .py file changes, sends the messages again; Ctrl-C exits 0 and leaves nothing running${preload ? ' (ASYA_PRELOAD: a new template each time)' : ''}`, async () => {
      const dir = tempDir();
      const marker = randomUUID();
      const module = path.join(dir, 'live_model.py');
      fs.mkdirSync(path.join(dir, 'lib'));
      fs.writeFileSync(path.join(dir, 'lib', 'helper.py'), 'FACTOR = 1\n');
      fs.writeFileSync(
        module,
        'from lib.helper import FACTOR\n\ndef predict(payload):\n    return {"version": 1, "x": payload["x"] * FACTOR}\n',
      );
      const child = spawn(process.execPath, [CLI, 'call', '--handler', 'live_model.predict', '--watch', '{"x": 2}'], {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/root',
          ASYA_TEST_RUN: process.env.ASYA_TEST_RUN ?? '',
          WATCH_TEST: marker,
          ...(preload ? { ASYA_PRELOAD: 'true' } : {}),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const waitFor = (what: string, ok: () => boolean) =>
        until(() => `${what}\nstdout:\n${stdout}\nstderr:\n${stderr}`, ok, 30_000, 50);
      const answers = () =>
        jsonLines(stdout).map((a) => (a as Array<{ payload: { version: number; x: number } }>)[0]?.payload);
      try {
        await waitFor(
          'the watch line and the first answer',
          () => /^WATCH {2}watching \. for \.py changes/m.test(stderr) && answers().length === 1,
        );
        assert.deepEqual(answers(), [{ version: 1, x: 2 }]);
        assert.equal(reports(stderr)[0]?.init !== null, true);

        fs.writeFileSync(
          module,
          'from lib.helper import FACTOR\n\ndef predict(payload):\n    return {"version": 2, "x": payload["x"] * FACTOR}\n',
        );
        await waitFor('the answer of the edited handler', () => answers().length === 2);
        assert.deepEqual(answers()[1], { version: 2, x: 2 });
        assert.match(stderr, /^RELOAD {2}live_model\.py changed: restarting the Python process$/m);
        assert.match(stderr, /^RELOAD {2}handler loaded in \d+ ms \(pid \d+\)$/m);
        const got = reports(stderr);
        assert.equal(got.length, 2);
        assert.notEqual(got[1]?.init, null, 'a reloaded process reports its load time on its first call');

        // a module it imports, in a subdirectory: a reload too
        fs.writeFileSync(path.join(dir, 'lib', 'helper.py'), 'FACTOR = 100\n');
        await waitFor('the answer with the edited helper', () => answers().length === 3);
        assert.deepEqual(answers()[2], { version: 2, x: 200 });

        // a broken edit is reported, the watch goes on, the fix is picked up
        fs.writeFileSync(module, 'def predict(payload):\n    return {"version": \n');
        await waitFor('the failed reload', () => /^RELOAD {2}waiting for the next change$/m.test(stderr));
        assert.match(stderr, /^RELOAD {2}failed: cannot load handler "live_model\.predict".*SyntaxError/m);
        fs.writeFileSync(module, 'def predict(payload):\n    return {"version": 3333}\n');
        await waitFor('the answer of the fixed handler', () => answers().length === 4);
        assert.deepEqual(answers()[3], { version: 3333 });
      } finally {
        child.kill('SIGINT');
      }
      assert.equal(await exited, 0, stderr);
      assert.deepEqual(survivors(marker), [], 'no Python (or any) process of this call is left');
    });
  }
});

/** Processes (not zombies) whose environment carries `marker`. */
function survivors(marker: string): string[] {
  return processesWithEnv('WATCH_TEST', marker).map((p) => `${p.pid} ${p.comm}`);
}
