/**
 * `call --watch` driven as a user would, for call-watch.test.ts and (the packaged executable) for
 * package.test.ts: a running watch, and a seeded sequence of every way an editor or a tool saves.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { CLI, coverageEnv, jsonLines, processesWithEnv, seeded, tempDir, until } from './helpers.js';

/** A running `call --watch`: what it printed, waits on it, and Ctrl-C. */
export interface WatchRun {
  pid: number;
  stdout(): string;
  stderr(): string;
  /** The payload of each answer printed so far. */
  answers(): Array<Record<string, unknown> | undefined>;
  waitFor(what: string, ok: () => boolean, timeoutMs?: number): Promise<true>;
  /** SIGINT, as Ctrl-C sends: resolves with the exit code once no process of this run is left. */
  interrupt(): Promise<number | null>;
  /** Run `body`, then Ctrl-C whatever happened; unless `body` failed, the exit code must be 0. */
  stoppedAfter(body: () => Promise<void>): Promise<void>;
}

/** Start `call --watch` in `cwd` (node dist/cli.js, or the packaged executable), with a minimal environment. */
export function watchCall(
  cwd: string,
  args: string[],
  opts: { env?: Record<string, string>; executable?: string } = {},
) {
  const marker = randomUUID();
  const command = opts.executable ? [opts.executable] : [process.execPath, CLI];
  const child = spawn(command[0]!, [...command.slice(1), 'call', '--watch', ...args], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      ASYA_TEST_RUN: process.env.ASYA_TEST_RUN ?? '',
      WATCH_TEST: marker,
      ...coverageEnv(),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const run: WatchRun = {
    pid: child.pid!,
    stdout: () => stdout,
    stderr: () => stderr,
    answers: () => jsonLines(stdout).map((a) => (a as Array<{ payload: Record<string, unknown> }>)[0]?.payload),
    waitFor: (what, ok, timeoutMs = 30_000) =>
      until(() => `${what}\nstdout:\n${stdout}\nstderr:\n${stderr.slice(-6000)}`, ok, timeoutMs, 20),
    interrupt: async () => {
      child.kill('SIGINT');
      const code = await exited;
      await until(
        () => `no process of this call left: ${JSON.stringify(processesWithEnv('WATCH_TEST', marker))}`,
        () => processesWithEnv('WATCH_TEST', marker).length === 0,
        10_000,
      );
      return code;
    },
    stoppedAfter: async (body) => {
      try {
        await body();
      } catch (err) {
        await run.interrupt();
        throw err;
      }
      assert.equal(await run.interrupt(), 0, stderr);
    },
  };
  return run;
}

/**
 * Every way an editor or a tool saves, in a seeded order: after each save the new version's answer
 * must arrive. The version lives in one module at a time: the handler, then (after a "new module" or
 * a "new package" step) the module it imports.
 */
const SAVES = [
  'in place',
  'temporary file renamed over',
  'unlink, then create',
  'truncate, then write',
  'git checkout of another branch',
  'new sibling module',
  'new sub-package',
] as const;
type Save = (typeof SAVES)[number];

const hasGit = spawnSync('git', ['--version']).status === 0;

/** The versions the two committed branches hold (the steps' own versions are the step numbers). */
const BRANCH_VERSIONS = { one: 100_001, two: 100_002 } as const;

const handlerSource = (version: string) => `def predict(payload):\n    return {"version": ${version}}\n`;

async function saveSequence(run: () => WatchRun, dir: string, steps: Save[], seed: number): Promise<number[]> {
  const latencies: number[] = [];
  let holder = 'handler.py'; // the file the version is in
  let branch: keyof typeof BRANCH_VERSIONS = 'one';
  const expect = async (version: number, step: string, since: number) => {
    await run().waitFor(
      `seed ${seed} (replay with ASYA_TEST_SEED=${seed}), step ${step}: the answer with version ${version}`,
      () => run().answers().at(-1)?.version === version,
      10_000,
    );
    latencies.push(Date.now() - since);
  };
  const write = (file: string, text: string, how: Save) => {
    const full = path.join(dir, file);
    if (how === 'temporary file renamed over') {
      const temp = `${full}.${randomUUID().slice(0, 8)}.tmp`;
      fs.writeFileSync(temp, text);
      fs.renameSync(temp, full);
    } else if (how === 'unlink, then create') {
      fs.unlinkSync(full);
      fs.writeFileSync(full, text);
    } else if (how === 'truncate, then write') {
      const fd = fs.openSync(full, 'r+');
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, text, 0);
      fs.closeSync(fd);
    } else {
      fs.writeFileSync(full, text);
    }
  };
  for (const [i, how] of steps.entries()) {
    const n = i + 1;
    const step = `${n}/${steps.length} (${how}; ${steps.slice(0, n).join(', ')})`;
    const since = Date.now();
    if (how === 'git checkout of another branch') {
      branch = branch === 'one' ? 'two' : 'one';
      git(dir, 'checkout', '-q', '-f', branch);
      holder = 'handler.py';
      await expect(BRANCH_VERSIONS[branch], step, since);
    } else if (how === 'new sibling module' || how === 'new sub-package') {
      // First the handler imports a module that is not there yet (it answers -n meanwhile), then the
      // module appears: that alone must reload it.
      const name = how === 'new sibling module' ? `sibling_${n}` : `package_${n}.inner`;
      fs.writeFileSync(
        path.join(dir, 'handler.py'),
        `try:\n    from ${name} import VERSION\nexcept ImportError:\n    VERSION = ${-n}\n\n${handlerSource('VERSION')}`,
      );
      await expect(-n, `${step}, the handler first`, since);
      const started = Date.now();
      if (how === 'new sibling module') {
        holder = `sibling_${n}.py`;
      } else {
        fs.mkdirSync(path.join(dir, `package_${n}`, 'inner'), { recursive: true });
        fs.writeFileSync(path.join(dir, `package_${n}`, '__init__.py'), '');
        holder = path.join(`package_${n}`, 'inner', '__init__.py');
      }
      fs.writeFileSync(path.join(dir, holder), `VERSION = ${n}\n`);
      await expect(n, step, started);
    } else {
      write(holder, holder === 'handler.py' ? handlerSource(String(n)) : `VERSION = ${n}\n`, how);
      await expect(n, step, since);
    }
  }
  return latencies;
}

function git(dir: string, ...args: string[]): void {
  const r = spawnSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', ...args], {
    cwd: dir,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
}

/** A handler directory at branch "one": a git repository with the two branches when git is there. */
function savedProject(): string {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'handler.py'), handlerSource(String(BRANCH_VERSIONS.two)));
  if (hasGit) {
    git(dir, 'init', '-q', '-b', 'two');
    git(dir, 'add', 'handler.py');
    git(dir, 'commit', '-q', '-m', 'two');
    git(dir, 'checkout', '-q', '-b', 'one');
    fs.writeFileSync(path.join(dir, 'handler.py'), handlerSource(String(BRANCH_VERSIONS.one)));
    git(dir, 'commit', '-q', '-am', 'one');
  } else {
    fs.writeFileSync(path.join(dir, 'handler.py'), handlerSource(String(BRANCH_VERSIONS.one)));
  }
  return dir;
}

/** Every kind of save once, in a seeded order, then `extra` more drawn at random. */
function saveSteps(next: (n: number) => number, extra: number): Save[] {
  const kinds = SAVES.filter((s) => hasGit || s !== 'git checkout of another branch');
  const order = [...kinds];
  for (let i = order.length - 1; i > 0; i--) {
    const j = next(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return [...order, ...Array.from({ length: extra }, () => kinds[next(kinds.length)]!)];
}

/** What the sequence covers, for a test's name. */
export const SAVE_KINDS = `in place, renamed over, unlinked and created, truncated, git checkout, new module, new package${hasGit ? '' : ' (no git here: no checkout)'}`;

/**
 * Every kind of save once in a seeded order, then `extra` random ones, against `call --watch` (node
 * dist/cli.js, or `executable`): after each, the new version's answer must arrive.
 */
export async function seededSaves(t: TestContext, extra: number, executable?: string): Promise<void> {
  const { seed, next } = seeded();
  const steps = saveSteps(next, extra);
  t.diagnostic(`seed ${seed}: ${steps.join(', ')}`);
  const dir = savedProject();
  const run = watchCall(dir, ['--handler', 'handler.predict', '{}'], executable ? { executable } : {});
  await run.stoppedAfter(async () => {
    await run.waitFor('the first answer', () => run.answers().length === 1);
    assert.deepEqual(run.answers(), [{ version: BRANCH_VERSIONS.one }]);
    const latencies = await saveSequence(() => run, dir, steps, seed);
    const sorted = [...latencies].sort((a, b) => a - b);
    t.diagnostic(
      `save to answer over ${latencies.length} saves: median ${sorted[sorted.length >> 1]} ms, max ${sorted.at(-1)} ms`,
    );
  });
}
