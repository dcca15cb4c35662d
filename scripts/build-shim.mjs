#!/usr/bin/env node
// The shim is delivered as one file (python-shim/asya_shim.py: what Python runs, what the single
// executable embeds), kept as sources of their own under python-shim/src/, joined in the order of
// python-shim/src/ORDER: the part a data scientist reads (loading and calling the handler) first, the
// plumbing after. `npm run build:shim` writes it; `npm run lint` (scripts/lint_python.py) fails when the
// committed file is not its sources joined.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sources = path.join(root, 'python-shim', 'src');
const order = fs
  .readFileSync(path.join(sources, 'ORDER'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const parts = order.map((name) => `${fs.readFileSync(path.join(sources, name), 'utf8').replace(/\n+$/, '')}\n`);
const text = `${parts.join('\n\n')}\n\nif __name__ == "__main__":\n    sys.exit(main())\n`;
fs.writeFileSync(path.join(root, 'python-shim', 'asya_shim.py'), text);
console.log(`python-shim/asya_shim.py: ${order.join(' + ')} (${text.split('\n').length - 1} lines)`);
