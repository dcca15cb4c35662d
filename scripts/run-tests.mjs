#!/usr/bin/env node
// Runs the whole suite: prepares the test virtualenv (numpy, orjson, scikit-learn, installed offline from the
// machine's wheels), then every test/*.test.ts against the built runtime in dist/.
// Usage: node scripts/run-tests.mjs [test files...]
import { execFileSync, spawnSync } from 'node:child_process';
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
  : fs.readdirSync(path.join(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => path.join('test', f));
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', '--test-force-exit', '--test-reporter=spec', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
