/**
 * scripts/lint_python.py, the shim's linter in `npm run lint`: it passes on the shim, and each rule
 * catches what it is for (a linter that cannot fail checks nothing).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, tempDir } from './helpers.js';

const LINT = path.join(ROOT, 'scripts', 'lint_python.py');

function lint(...args: string[]) {
  return spawnSync('python3', [LINT, ...args], { encoding: 'utf8' });
}

describe('the shim linter', () => {
  it('passes on the shim: its sources, and the delivered file is them joined', () => {
    const run = lint();
    assert.equal(run.status, 0, run.stdout + run.stderr);
  });

  const cases: Array<[string, string, RegExp]> = [
    ['syntax newer than 3.7', 'import os\nif (n := len(os.sep)):\n    pass\n', /not Python 3\.7 syntax/],
    ['an unused import', 'import os\nimport json\nprint(os.sep)\n', /'json' is imported and never used/],
    ['a name bound nowhere', 'def f():\n    return undefined_thing\n', /'undefined_thing' is read but bound nowhere/],
    [
      'a package outside the standard library',
      'import requests\nrequests.get\n',
      /'requests', not in the standard library/,
    ],
    ['a long line', `x = "${'y'.repeat(130)}"\n`, /line of 136 characters/],
  ];
  for (const [what, source, expected] of cases) {
    it(`catches ${what}`, () => {
      const dir = tempDir();
      const file = path.join(dir, 'bad.py');
      fs.writeFileSync(file, source);
      const run = lint('--file', file);
      fs.rmSync(dir, { recursive: true, force: true });
      assert.equal(run.status, 1, run.stdout);
      assert.match(run.stdout, expected);
    });
  }
});
