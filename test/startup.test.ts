/**
 * Cold start: the runtime starts Python before it has loaded the rest of itself or read its
 * configuration (src/worker/spawn.ts). That Python is the one that loads the handler; when the
 * runtime stops before it got there (a configuration error, a socket it cannot own), no Python is
 * left behind; and the start is reported as one log line with its phases.
 *
 * Python is started through a wrapper that appends its pid to a file before exec'ing the real
 * interpreter, so a test knows which process was started, when, and whether it is still there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { env, runToExit, startRuntime, tempDir, until, waitForExit } from './helpers.js';

const PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

/** A python3 that records each start: returns the interpreter to use and a reader of the recorded pids. */
function recordingPython(): { python: string; pids: () => number[] } {
  const dir = tempDir('asya-python-');
  const log = path.join(dir, 'pids');
  const python = path.join(dir, 'python3');
  fs.writeFileSync(python, `#!/bin/sh\necho $$ >> ${JSON.stringify(log)}\nexec ${JSON.stringify(PYTHON)} "$@"\n`);
  fs.chmodSync(python, 0o755);
  const pids = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number) : []);
  return { python, pids };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The parent pid of a process, from /proc. */
function parentOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe('cold start', () => {
  it('a configuration error after Python was started: exit 2, the usual one line, no Python left', async () => {
    const { python, pids } = recordingPython();
    const result = await runToExit({
      handler: 'basic.echo',
      env: { ASYA_PYTHONEXECUTABLE: python, ASYA_HANDLER_MODE: 'sideways' },
    });
    assert.equal(result.code, 2);
    assert.deepEqual(
      result.text.split('\n').filter(Boolean),
      [result.text.trim()],
      'one line on stderr, nothing from Python',
    );
    assert.equal(result.logs[0]?.level, 'fatal');
    assert.equal(
      result.logs[0]?.msg,
      'FATAL: ASYA_HANDLER_MODE="sideways" is not valid: expected payload, envelope (any case)',
    );
    assert.equal(result.readyFileSeen, false);
    const started = pids();
    assert.equal(started.length, 1, 'Python was started before the configuration was read');
    assert.equal(alive(started[0]!), false, 'and it is gone when the runtime has exited');
  });

  it('the Python started early is the one that loads the handler, and the start is logged with its phases', async () => {
    const { python, pids } = recordingPython();
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_PYTHONEXECUTABLE: python } });
    try {
      assert.deepEqual(((await rt.send(env(7))) as Array<{ payload: unknown }>)[0]?.payload, 7);
      const loaded = await rt.waitForLog((l) => l.msg === 'handler loaded');
      const started = pids();
      assert.equal(started.length, 1, 'one Python process was started');
      // the handler runs in the reaper's child: the reaper is the process that was started early
      assert.equal(parentOf(loaded.python_pid as number), started[0]);

      const line = await rt.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('started in '));
      const phases = line.startup_ms as Record<string, number>;
      for (const phase of [
        'node_started',
        'python_spawned',
        'modules_loaded',
        'config_parsed',
        'listening',
        'python_started',
        'python_waiting',
        'python_init',
        'python_loaded',
        'ready',
      ])
        assert.equal(typeof phases[phase], 'number', `phase ${phase} in ${JSON.stringify(phases)}`);
      assert.ok(phases.python_spawned! <= phases.modules_loaded!, 'Python was started before the modules loaded');
      assert.ok(phases.modules_loaded! <= phases.config_parsed!);
      assert.ok(phases.python_init! <= phases.python_loaded!);
      assert.ok(phases.python_loaded! <= phases.ready!);
      assert.equal(line.msg, `started in ${Math.round(phases.ready!)} ms`);
      assert.deepEqual(
        Object.values(phases),
        [...Object.values(phases)].sort((a, b) => a - b),
        'in the order they ended',
      );
      assert.equal(rt.logs.filter((l) => l.startup_ms !== undefined).length, 1, 'logged once');
    } finally {
      await rt.stop();
    }
  });

  it('a runtime refused the socket stops the Python it started early', async () => {
    const dir = tempDir();
    const first = await startRuntime({ handler: 'basic.echo', env: { ASYA_SOCKET_DIR: dir } });
    try {
      const { python, pids } = recordingPython();
      const second = await runToExit({
        handler: 'basic.echo',
        env: { ASYA_SOCKET_DIR: dir, ASYA_PYTHONEXECUTABLE: python },
      });
      assert.equal(second.code, 5);
      const started = pids();
      assert.equal(started.length, 1);
      assert.equal(alive(started[0]!), false, 'the refused runtime left no Python behind');
    } finally {
      await first.stop();
    }
  });
  it('an interpreter wrapper that never execs: its children go with it, at a configuration error and at SIGTERM', async () => {
    // A shell that dies of SIGTERM at once leaves its own children in its process group.
    const dir = tempDir('asya-python-');
    const pidsFile = path.join(dir, 'children');
    const python = path.join(dir, 'python3');
    fs.writeFileSync(python, `#!/bin/sh\nsleep 1000 &\necho $! >> ${JSON.stringify(pidsFile)}\nwait\n`);
    fs.chmodSync(python, 0o755);
    const children = () => fs.readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number);
    // Gone, or a zombie waiting for init to reap it.
    const ended = (pid: number) => waitForExit(pid, `the wrapper's child sleep`, 5000);

    const refused = await runToExit({
      handler: 'basic.echo',
      env: { ASYA_PYTHONEXECUTABLE: python, ASYA_WORKERS: '0' },
    });
    assert.equal(refused.code, 2);
    for (const pid of fs.existsSync(pidsFile) ? children() : []) await ended(pid);
    fs.rmSync(pidsFile, { force: true });

    const rt = await startRuntime({
      handler: 'basic.echo',
      waitReady: false,
      env: { ASYA_PYTHONEXECUTABLE: python, ASYA_WORKERS: '2' },
    });
    // Both workers' wrappers have started their child.
    await until('two wrapped children', () => fs.existsSync(pidsFile) && children().length === 2, 10_000);
    rt.child.kill('SIGTERM');
    assert.equal((await rt.exited).code, 0);
    for (const pid of children()) await ended(pid); // no child of the wrapper survives the runtime
  });
});
