/**
 * The house rules of src/, checked: one folder per phase of a message's life, imports only
 * in the direction the data flows (cli → runtime → worker → envelope / socket → the shared root),
 * and no import cycles.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './helpers.js';

const SRC = path.join(ROOT, 'src');

/** What each phase may import besides itself. The root holds what every phase uses. */
const ALLOWED: Record<string, string[]> = {
  root: [],
  socket: ['root'],
  envelope: ['root'],
  worker: ['root', 'socket', 'envelope'],
  runtime: ['root', 'socket', 'envelope', 'worker'],
  cli: ['root', 'socket', 'envelope', 'worker', 'runtime'],
};
/** Entry points at the root start everything. */
const ENTRIES = new Set(['cli.ts', 'sea-main.ts']);

function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts')) out.push(path.relative(SRC, full));
    }
  };
  walk(SRC);
  return out;
}

function phaseOf(file: string): string {
  const dir = path.dirname(file);
  return dir === '.' ? 'root' : dir.split(path.sep)[0]!;
}

/**
 * The relative module specifiers `text` imports: static imports and re-exports (`import … from`,
 * `export … from`, `export * from`), side-effect imports (`import './x.js'`) and dynamic ones
 * (`import('./x.js')`, awaited or not).
 */
function relativeImports(text: string): string[] {
  const forms = [
    /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  return forms.flatMap((form) => [...text.matchAll(form)].map((m) => m[1]!)).filter((spec) => spec.startsWith('.'));
}

function importsOf(file: string): string[] {
  const specs = relativeImports(fs.readFileSync(path.join(SRC, file), 'utf8'));
  return specs.map((spec) => path.relative(SRC, path.resolve(SRC, path.dirname(file), spec)).replace(/\.js$/, '.ts'));
}

describe('the import finder', () => {
  const cases: Array<[string, string, string[]]> = [
    ['a named import', "import { a } from './a.js';", ['./a.js']],
    ['a type import over several lines', "import type {\n  A,\n  B,\n} from '../b.js';", ['../b.js']],
    ['a default and a namespace import', "import c from './c.js';\nimport * as d from './d.js';", ['./c.js', './d.js']],
    ['a side-effect import', "import './e.js'; // first", ['./e.js']],
    ['a dynamic import, awaited', "const m = cond ? await import('./f.js') : null;", ['./f.js']],
    ['a dynamic import, not awaited', 'void import("./g.js").then(({ run }) => run());', ['./g.js']],
    ['export * from', "export * from './h.js';", ['./h.js']],
    ['export * as from', "export * as ns from './i.js';", ['./i.js']],
    ['a named re-export', "export { j, type J } from './j.js';", ['./j.js']],
    ['packages and node: modules are not ours', "import fs from 'node:fs';\nimport { pino } from 'pino';", []],
    ['an export without from imports nothing', "export const k = 'from';\nexport function l() {}", []],
  ];
  for (const [form, text, expected] of cases) {
    it(`finds ${form}`, () => assert.deepEqual(relativeImports(text).sort(), expected));
  }
});

describe('architecture', () => {
  const files = sources();

  it('src/ has the phase folders, and nothing else nests', () => {
    for (const file of files) assert.ok(phaseOf(file) in ALLOWED, `${file} is outside the phase folders`);
    for (const phase of Object.keys(ALLOWED).filter((p) => p !== 'root')) {
      assert.ok(
        files.some((f) => phaseOf(f) === phase),
        `no module in src/${phase}/`,
      );
    }
  });

  it('imports go one way: cli → runtime → worker → envelope / socket → root', () => {
    const upward: string[] = [];
    for (const file of files) {
      if (ENTRIES.has(file)) continue;
      const from = phaseOf(file);
      for (const target of importsOf(file)) {
        const to = phaseOf(target);
        if (to !== from && !ALLOWED[from]!.includes(to)) upward.push(`${file} → ${target}`);
      }
    }
    assert.deepEqual(upward, []);
  });

  it('there are no import cycles', () => {
    const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(file)), file].join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of files) visit(file, []);
    assert.deepEqual(cycles, []);
  });
});
