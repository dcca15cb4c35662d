/**
 * cli/json-layout.ts, how the CLI lays out an answer: only whitespace changes, every token is copied
 * byte for byte; the pretty layout is JSON.stringify's (and Python's json.dumps(indent=…)); any depth.
 *
 * Replay with the printed seed: LAYOUT_SEED=<seed> node scripts/run-tests.mjs test/internals/json-layout.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { layout } from '../../src/cli/json-layout.js';
import { JsonScanError } from '../../src/envelope/json-scan.js';
import { valueText, withoutSpace } from '../json-arbitraries.js';

const SEED = process.env.LAYOUT_SEED ? Number(process.env.LAYOUT_SEED) : Date.now() % 2 ** 31;

const compact = (text: string) => layout(Buffer.from(text), null).toString('utf8');
const pretty = (text: string, indent = '  ') => layout(Buffer.from(text), indent).toString('utf8');

function check(property: fc.IPropertyWithHooks<[string]>): void {
  try {
    fc.assert(property, { seed: SEED, numRuns: 300 });
  } catch (err) {
    throw new Error(`replay with LAYOUT_SEED=${SEED}\n${(err as Error).message}`);
  }
}

describe(`JSON layout (seed ${SEED})`, () => {
  it('compact drops exactly the whitespace between tokens; pretty then compact gives the compact bytes back', () => {
    check(
      fc.property(valueText, (text) => {
        const flat = compact(text);
        assert.equal(flat, withoutSpace(text));
        assert.equal(compact(pretty(text)), flat);
        assert.equal(compact(pretty(text, '\t')), flat);
        assert.deepEqual(JSON.parse(pretty(text)), JSON.parse(text));
      }),
    );
  });

  it("pretty is JSON.stringify's layout, compact is JSON.stringify's bytes", () => {
    check(
      fc.property(
        fc.jsonValue().map((v) => JSON.stringify(v)),
        (text) => {
          const value = JSON.parse(text) as unknown;
          assert.equal(pretty(text), JSON.stringify(value, null, 2));
          assert.equal(pretty(text, '    '), JSON.stringify(value, null, 4));
          assert.equal(compact(JSON.stringify(value, null, 3)), text);
        },
      ),
    );
  });

  it('copies numbers, escapes and duplicate keys as they are', () => {
    const text = '[ 1.0 , -0.0, 1180591620717411303424, 1E+2, 1e400, "\\ud800\\u0000\\"\\\\ ", {"a": 1, "a" :2} ]';
    assert.equal(compact(text), '[1.0,-0.0,1180591620717411303424,1E+2,1e400,"\\ud800\\u0000\\"\\\\ ",{"a":1,"a":2}]');
    assert.equal(
      pretty(text),
      '[\n  1.0,\n  -0.0,\n  1180591620717411303424,\n  1E+2,\n  1e400,\n  "\\ud800\\u0000\\"\\\\ ",\n  {\n    "a": 1,\n    "a": 2\n  }\n]',
    );
    assert.equal(pretty(' { } '), '{}');
    assert.equal(pretty('[ [ ] , { } ]'), '[\n  [],\n  {}\n]');
    assert.equal(pretty(' "x" '), '"x"');
  });

  it('nesting 100 000 deep costs no stack', () => {
    const n = 100_000;
    const deep = `${'[{"k": '.repeat(n)}-0.0${'}]'.repeat(n)}`;
    assert.equal(compact(deep), `${'[{"k":'.repeat(n)}-0.0${'}]'.repeat(n)}`);
    // Indented by nothing: the pretty path at full depth, its output linear in the depth
    const lines = pretty(deep, '').split('\n');
    assert.equal(lines.length, 4 * n + 1);
    assert.equal(lines[2 * n], '"k": -0.0');
  });

  it('a token that is not JSON is refused, not guessed', () => {
    assert.throws(() => compact('[NaN]'), JsonScanError);
    assert.throws(() => compact('["open'), JsonScanError);
  });
});
