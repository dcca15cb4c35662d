#!/usr/bin/env node
// Runs the whole suite: prepares the test virtualenv (numpy, orjson, scikit-learn, installed offline from the
// machine's wheels), then every test/*.test.ts against the built runtime in dist/.
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

ensureVenv();
ensureRootfs();
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : fs
      .readdirSync(path.join(root, 'test'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => path.join('test', f));
// Every process a test starts carries this marker in its environment (test/helpers.ts passes it on to
// runtimes, and they to Python), so whatever a cancelled or interrupted test leaves behind is found and
// stopped at the end, whoever its parent was.
const marker = `asya-test-${process.pid}-${Date.now()}`;
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
  { cwd: root, stdio: 'inherit', env: { ...process.env, ASYA_TEST_RUN: marker } },
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
  process.exit(code ?? (signal ? 1 : 0));
});

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
