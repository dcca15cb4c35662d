#!/usr/bin/env node
// After tsc: the dependencies whose module graph is large are bundled into one file each under
// dist/vendor/, and dist/ imports that file. zod/mini is ~90 ES modules: loaded one by one they cost
// `node dist/cli.js` ~60 ms at every start, bundled ~5 ms (docs/performance.md, "Cold start").
// The single executable bundles everything anyway (scripts/package.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
/**
 * Import specifier → the file under dist/vendor/, and the compiled modules that import it, each as
 * `import * as <namespace>`: what they use of it (`<namespace>.name`) is all the bundle exports.
 */
const BUNDLED = [{ specifier: 'zod/mini', file: 'zod-mini.js', namespace: 'z', importers: ['config.js'] }];

for (const { specifier, file, namespace, importers } of BUNDLED) {
  const used = new Set();
  for (const importer of importers) {
    const text = fs.readFileSync(path.join(dist, importer), 'utf8');
    for (const m of text.matchAll(new RegExp(`\\b${namespace}\\.([A-Za-z_$][\\w$]*)`, 'g'))) used.add(m[1]);
  }
  await build({
    stdin: { contents: `export { ${[...used].join(', ')} } from '${specifier}';`, resolveDir: root, loader: 'js' },
    outfile: path.join(dist, 'vendor', file),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minifyWhitespace: true,
    logLevel: 'warning',
  });
  for (const importer of importers) {
    const compiled = path.join(dist, importer);
    const text = fs.readFileSync(compiled, 'utf8');
    const from = `from '${specifier}';`;
    if (!text.includes(from))
      throw new Error(`${importer} no longer imports ${specifier}: update scripts/bundle-deps.mjs`);
    const relative = path.relative(path.dirname(compiled), path.join(dist, 'vendor', file));
    fs.writeFileSync(compiled, text.replaceAll(from, `from './${relative}';`));
  }
}
