#!/usr/bin/env node
// `npm run package`: builds dist/asya-runtime, one self-contained executable (Node's single
// executable application): the supervisor bundled into one script, the Python shim embedded as an
// asset, injected into a copy of the official Node.js binary pinned by package.json's
// `executableNode` (not the Node this script runs on: development may stay on an older Node). The
// Dockerfile's build stage runs this same script, so what the tests exercise is what the image carries.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const work = path.join(root, 'dist', 'sea');
const output = path.join(root, 'dist', 'asya-runtime');
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });

/**
 * The official Node.js binary the executable carries: npm's `node-linux-<arch>` package (the
 * nodejs.org build, repackaged), at the version package.json pins, checked against the pinned
 * integrity. It is fetched with `npm pack`, not installed as a dependency: its package links a
 * `node` into node_modules/.bin, which would put every npm script on that Node.
 */
function executableNode() {
  const { version, integrity } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).executableNode;
  const name = `node-linux-${process.arch}`;
  if (process.platform !== 'linux' || !integrity[name])
    throw new Error(
      `no pinned Node.js for ${process.platform}-${process.arch} (package.json executableNode.integrity)`,
    );
  const dir = path.join(root, '.cache', `${name}-${version}`);
  const binary = path.join(dir, 'node');
  if (!fs.existsSync(binary)) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-node-'));
    try {
      execFileSync('npm', ['pack', `${name}@${version}`, '--pack-destination', tmp, '--silent'], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      const tarball = path.join(tmp, `${name}-${version}.tgz`);
      const actual = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
      if (actual !== integrity[name])
        throw new Error(`${name}@${version}: integrity ${actual}, package.json pins ${integrity[name]}`);
      execFileSync('tar', ['-xzf', tarball, '-C', tmp, 'package/bin/node']);
      fs.mkdirSync(dir, { recursive: true });
      fs.renameSync(path.join(tmp, 'package', 'bin', 'node'), binary);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  const reported = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  if (reported !== `v${version}`) throw new Error(`${binary} is Node ${reported}, package.json pins ${version}`);
  return { binary, version };
}
const node = executableNode();

/** msgpackr tries its optional native addon in a try/catch; an executable cannot load one, so it gets nothing. */
const withoutNativeAddons = {
  name: 'without-native-addons',
  setup(b) {
    b.onResolve({ filter: /^msgpackr-extract$/ }, () => ({ path: 'msgpackr-extract', namespace: 'absent' }));
    b.onLoad({ filter: /.*/, namespace: 'absent' }, () => ({ contents: 'module.exports = undefined;', loader: 'js' }));
  },
};

// 1. One CommonJS script (what Node's SEA runs), with every dependency inside.
await build({
  entryPoints: [path.join(root, 'src', 'sea-main.ts')],
  outfile: path.join(work, 'main.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${node.version.split('.')[0]}`,
  minifyWhitespace: true,
  plugins: [withoutNativeAddons],
  logLevel: 'warning',
  logOverride: { 'empty-import-meta': 'silent' }, // only the checkout path reads import.meta.url
});

// 2. The SEA blob: the script plus the shim as an asset, made by the Node it goes into (the blob's
// format and code cache are that Node's).
const config = {
  main: path.join(work, 'main.cjs'),
  output: path.join(work, 'sea-prep.blob'),
  disableExperimentalSEAWarning: true,
  useCodeCache: true,
  assets: { 'asya_shim.py': path.join(root, 'python-shim', 'asya_shim.py') },
};
fs.writeFileSync(path.join(work, 'sea-config.json'), JSON.stringify(config, null, 2));
execFileSync(node.binary, ['--experimental-sea-config', path.join(work, 'sea-config.json')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

// 3. A copy of that node with the blob injected (postject itself runs on any Node).
fs.copyFileSync(node.binary, output);
fs.chmodSync(output, 0o755);
try {
  execFileSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'postject', 'dist', 'cli.js'),
      output,
      'NODE_SEA_BLOB',
      config.output,
      '--sentinel-fuse',
      'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
    ],
    { stdio: 'pipe' }, // postject's ELF parser warns about notes it does not know; only failures matter
  );
} catch (err) {
  process.stderr.write(String(err.stderr ?? err));
  throw err;
}

const version = execFileSync(output, ['--version'], { encoding: 'utf8', env: {} }).trim();
const mb = (fs.statSync(output).size / 2 ** 20).toFixed(1);
console.log(`built ${path.relative(process.cwd(), output)} (${mb} MiB, asya-runtime ${version}, Node ${node.version})`);
