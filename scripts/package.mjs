#!/usr/bin/env node
// `npm run package`: builds dist/asya-runtime, one self-contained executable (Node's single
// executable application): the supervisor bundled into one script, the Python shim embedded as an
// asset, injected into a copy of this machine's node binary. The Dockerfile's build stage runs
// this same script, so what the tests exercise is what the image carries.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const work = path.join(root, 'dist', 'sea');
const output = path.join(root, 'dist', 'asya-runtime');
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });

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
  target: 'node20',
  minifyWhitespace: true,
  plugins: [withoutNativeAddons],
  logLevel: 'warning',
  logOverride: { 'empty-import-meta': 'silent' }, // only the checkout path reads import.meta.url
});

// 2. The SEA blob: the script plus the shim as an asset.
const config = {
  main: path.join(work, 'main.cjs'),
  output: path.join(work, 'sea-prep.blob'),
  disableExperimentalSEAWarning: true,
  useCodeCache: true,
  assets: { 'asya_shim.py': path.join(root, 'python-shim', 'asya_shim.py') },
};
fs.writeFileSync(path.join(work, 'sea-config.json'), JSON.stringify(config, null, 2));
execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea-config.json')], { stdio: ['ignore', 'ignore', 'inherit'] });

// 3. A copy of node with the blob injected.
fs.copyFileSync(process.execPath, output);
fs.chmodSync(output, 0o755);
try {
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules', 'postject', 'dist', 'cli.js'), output, 'NODE_SEA_BLOB', config.output, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'],
    { stdio: 'pipe' }, // postject's ELF parser warns about notes it does not know; only failures matter
  );
} catch (err) {
  process.stderr.write(String(err.stderr ?? err));
  throw err;
}

const version = execFileSync(output, ['--version'], { encoding: 'utf8', env: {} }).trim();
const mb = (fs.statSync(output).size / 2 ** 20).toFixed(1);
console.log(`built ${path.relative(process.cwd(), output)} (${mb} MiB, asya-runtime ${version}, Node ${process.version})`);
