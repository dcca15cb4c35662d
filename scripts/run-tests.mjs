#!/usr/bin/env node
// Runs the whole suite: prepares the test virtualenv (numpy, orjson, scikit-learn, installed offline from the
// machine's wheels), then every test/*.test.ts (black-box, by feature) and test/internals/*.test.ts (pure
// modules, beside their names) against the built runtime in dist/.
// Usage: node scripts/run-tests.mjs [test files...]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const venv = path.join(root, '.cache', 'test-venv');
const venvPython = path.join(venv, 'bin', 'python3');

function ensureVenv() {
  const probe = spawnSync(venvPython, ['-c', 'import numpy, orjson, sklearn'], { stdio: 'ignore' });
  if (probe.status === 0) return;
  console.log(`preparing ${path.relative(root, venv)} (numpy, orjson, scikit-learn) for the tests...`);
  fs.rmSync(venv, { recursive: true, force: true });
  execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  // This machine's wheels are in a local index; naming it avoids pip retrying pypi.org offline.
  const local = fs.existsSync('/opt/pypi/simple') ? { PIP_INDEX_URL: 'file:///opt/pypi/simple' } : {};
  execFileSync(venvPython, ['-m', 'pip', 'install', '--quiet', 'numpy', 'orjson', 'scikit-learn'], {
    stdio: 'inherit',
    env: { ...process.env, ...local },
  });
}

/** The unchanged-image test's Debian root filesystem (root only: debootstrap and chroot need it). */
function ensureRootfs() {
  if (process.getuid?.() !== 0) {
    console.log('not root: the unchanged-image test (debootstrap + chroot) will be skipped');
    return;
  }
  try {
    execFileSync('bash', [path.join(root, 'scripts', 'make-rootfs.sh')], { stdio: 'inherit' });
  } catch {
    console.log('scripts/make-rootfs.sh failed (above); the unchanged-image test will fail, the rest runs');
  }
}

/**
 * test/sidecar.test.ts runs messages through the real Go sidecar and RabbitMQ of ../shared/pipeline (or
 * $ASYA_PIPELINE_DIR, the same rule as the test). Where that folder exists, its prepare.sh makes sure the
 * broker, pika and the sidecar binary are there (idempotent, quiet when nothing is missing). Its build
 * directory follows one rule in prepare.sh and stack.py (build/ beside it, else $PIPELINE_BUILD_DIR, else
 * ~/.cache/asya-pipeline), and both see this environment, so the test finds what was built. A failure is
 * not hidden: the test then fails with stack.py's reason.
 */
function ensurePipeline() {
  const dir = process.env.ASYA_PIPELINE_DIR ?? path.join(root, '..', 'shared', 'pipeline');
  if (!fs.existsSync(path.join(dir, 'prepare.sh'))) {
    console.log(`no ${dir}: test/sidecar.test.ts (the real sidecar and RabbitMQ) will be skipped`);
    return;
  }
  const prepared = spawnSync('bash', [path.join(dir, 'prepare.sh')], { stdio: 'inherit' });
  if (prepared.status !== 0)
    console.log(
      `${dir}/prepare.sh failed (exit ${prepared.status ?? prepared.signal}, above): test/sidecar.test.ts will fail`,
    );
}

const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['test', path.join('test', 'internals')].flatMap((dir) =>
      fs
        .readdirSync(path.join(root, dir))
        .filter((f) => f.endsWith('.test.ts'))
        .sort()
        .map((f) => path.join(dir, f)),
    );
ensureVenv();
ensureRootfs();
if (files.some((f) => path.basename(f) === 'sidecar.test.ts')) ensurePipeline();
// Every process a test starts carries this marker in its environment (test/helpers.ts passes it on to
// runtimes, and they to Python), so whatever a cancelled or interrupted test leaves behind is found and
// stopped at the end, whoever its parent was.
const marker = `asya-test-${process.pid}-${Date.now()}`;
// Coverage of the supervisor as the tests exercise it: every Node process of the run (the runtimes the
// tests start included: test/helpers.ts passes NODE_V8_COVERAGE on) writes V8's counts on exit, and c8
// maps them through dist/'s source maps back to src/. Only a whole run is held to the floor.
const wholeRun = process.argv.slice(2).length === 0;
const coverage = process.env.ASYA_TEST_COVERAGE !== '0';
const coverageRaw = path.join(root, '.cache', 'coverage', 'v8');
if (coverage) fs.rmSync(coverageRaw, { recursive: true, force: true });
const runner = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    '--test-timeout=600000',
    '--test-force-exit',
    '--test-reporter=spec',
    ...files,
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ASYA_TEST_RUN: marker, ...(coverage ? { NODE_V8_COVERAGE: coverageRaw } : {}) },
  },
);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    runner.kill(signal);
    sweep();
    process.exit(130);
  });
}
runner.on('exit', (code, signal) => {
  const left = sweep();
  if (left.length > 0)
    console.log(`\nstopped ${left.length} process(es) the tests left behind:\n  ${left.join('\n  ')}`);
  const status = code ?? (signal ? 1 : 0);
  process.exit(status === 0 && coverage ? reportCoverage() : status);
});

/**
 * Line, branch and function coverage of src/ over the run; below the floor fails a whole run. The
 * floor sits a few points under what the suite reaches, so dead code or untested features show up as a
 * failure, not as a slow slide.
 */
function reportCoverage() {
  // 2026-11-25, whole run: lines 96.97%, branches 91.01%, functions 97.05%.
  const floor = { lines: 94, branches: 88, functions: 94 };
  const args = [
    path.join(root, 'node_modules', 'c8', 'bin', 'c8.js'),
    'report',
    `--temp-directory=${coverageRaw}`,
    `--reports-dir=${path.join(root, '.cache', 'coverage')}`,
    '--reporter=text-summary',
    '--reporter=html',
    '--exclude-after-remap',
    '--include=src/**',
    '--exclude=src/sea-main.ts',
    ...(wholeRun ? ['--check-coverage', ...Object.entries(floor).map(([k, v]) => `--${k}=${v}`)] : []),
  ];
  const where = `html: .cache/coverage/index.html${wholeRun ? `; floor ${JSON.stringify(floor)}` : ''}`;
  console.log(`\ncoverage of src/ (${where})`);
  const report = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  // ~1 MB of raw counts per process started (~370 MB a run): the report is what is kept.
  fs.rmSync(coverageRaw, { recursive: true, force: true });
  return report.status ?? 1;
}

/** SIGKILL every process whose environment carries this run's marker; returns their command lines. */
function sweep() {
  const found = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`ASYA_TEST_RUN=${marker}`)) continue;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').slice(0, 160);
      process.kill(Number(pid), 'SIGKILL');
      found.push(`${pid} ${cmdline}`);
    } catch {
      // gone already, or not ours to read
    }
  }
  return found;
}
