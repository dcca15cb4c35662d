/** cli/env-file.ts: the .env forms teams use, generated values read back exactly, and every bad line named. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseEnvFile } from '../../src/cli/env-file.js';
import { UsageError } from '../../src/cli/messages.js';

describe('cli/env-file.ts', () => {
  it('reads the forms of docker --env-file and dotenv', () => {
    const text = [
      '\uFEFF# a comment',
      '',
      'ASYA_HANDLER=model.Classifier.predict',
      'export MODEL_PATH = /models/m.bin  # the weights',
      'EMPTY=',
      'RAW=\'a "b" #c \\n\'',
      'ESC="line1\\nline2\\t\\"q\\" \\\\"',
      'MULTI="first',
      'second"',
      'HASH=a#b',
      'WIN=x\r',
      '__proto__=p',
    ].join('\n');
    const vars = parseEnvFile(text, 'f');
    assert.equal(Object.getOwnPropertyDescriptor(vars, '__proto__')?.value, 'p', 'an own variable, not the prototype');
    Reflect.deleteProperty(vars, '__proto__');
    assert.deepEqual(vars, {
      ASYA_HANDLER: 'model.Classifier.predict',
      MODEL_PATH: '/models/m.bin',
      EMPTY: '',
      RAW: 'a "b" #c \\n',
      ESC: 'line1\nline2\t"q" \\',
      MULTI: 'first\nsecond',
      HASH: 'a#b',
      WIN: 'x',
    });
  });

  it('a bare name passes the variable through from the environment, as docker does; unset, it is skipped', () => {
    assert.deepEqual(parseEnvFile('HOME\nexport TOKEN\nUNSET_ONE\nA=1', 'f', { HOME: '/root', TOKEN: 't' }), {
      HOME: '/root',
      TOKEN: 't',
      A: '1',
    });
  });

  it('names the file and line of anything else', () => {
    const cases: Array<[string, RegExp]> = [
      ['A=1\nnot a variable', /^--env-file f, line 2: expected KEY=VALUE or KEY, got "not a variable"$/],
      ['1ABC=x', /^--env-file f, line 1: "1ABC" is not a variable name$/],
      ['A-B=x', /"A-B" is not a variable name/],
      ['A="never closed\nB=2', /^--env-file f, line 1: the " quote is never closed$/],
      ["A='x' trailing", /^--env-file f, line 1: unexpected "trailing" after the quoted value of A$/],
      ['A=x\0y', /^--env-file f: A holds a NUL byte, which no environment variable can$/],
      [
        `BIG=${'x'.repeat(200_000)}`,
        /^--env-file f: BIG is 200000 bytes; an environment variable holds less than 131072/,
      ],
    ];
    for (const [text, message] of cases)
      assert.throws(
        () => parseEnvFile(text, 'f'),
        (err: Error) => err instanceof UsageError && message.test(err.message),
      );
  });

  it('any value, written double-quoted with escapes, reads back as it was (generated)', () => {
    const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
    const value = fc.string({ unit: fc.constantFrom('a', ' ', '#', '"', "'", '\\', '\n', '\t', '=', 'é', '$') });
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 6 }), (vars) => {
        const quote = (v: string) =>
          `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t')}"`;
        const text = Object.entries(vars)
          .map(([k, v]) => `${k}=${quote(v)}`)
          .join('\n');
        assert.deepEqual(parseEnvFile(text, 'f'), { ...vars });
      }),
      { numRuns: 300 },
    );
  });
});
