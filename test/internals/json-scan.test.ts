/**
 * envelope/json-scan.ts, the byte-level JSON reader: member spans, escapes and bounds as a table, then
 * fuzzing against JSON.parse and Python's json on the same texts: generated valid documents, and the same documents with bytes inserted, deleted and
 * replaced. Both must agree with the reader on every text about whether it is JSON, and member
 * spans must hold what JSON.parse finds under each name.
 *
 * Replay with the printed seed: SCAN_SEED=<seed> node scripts/run-tests.mjs test/internals/json-scan.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { handlerMeta, parseRequest, payloadModeResponse } from '../../src/envelope/envelope.js';
import {
  JsonScanError,
  lastMember,
  MAX_NESTING,
  type Member,
  scanObject,
  skipSpace,
  validate,
} from '../../src/envelope/json-scan.js';
import { WireError } from '../../src/errors.js';

describe('JSON scanner', () => {
  const scan = (text: string, skipped?: string) =>
    scanObject(Buffer.from(text), 0, Buffer.byteLength(text), { depth: 1, skipped });
  const byKey = (members: Member[]) => new Map(members.map((m) => [m.key, m]));

  it('finds member spans, skipping strings with escaped quotes and nested containers', () => {
    const text = ' { "a" : "x\\"}]" , "payload":[{"k":"]"},[1,2]], "z":null } ';
    const m = byKey(scan(text, 'payload')!.members);
    const slice = (k: string) => text.slice(m.get(k)!.start, m.get(k)!.end);
    assert.equal(slice('a'), '"x\\"}]"');
    assert.equal(slice('payload'), '[{"k":"]"},[1,2]]');
    assert.equal(slice('z'), 'null');
  });

  it('handles an escaped backslash before a closing quote, and keeps duplicates in order', () => {
    const r = scan('{"a":"x\\\\","b":1,"a":2}');
    assert.deepEqual(
      r!.members.map((m) => m.key),
      ['a', 'b', 'a'],
    );
  });

  it('decodes escaped member names and keeps __proto__ as data', () => {
    assert.deepEqual(
      scan('{"pay\\u006coad":1,"__proto__":{"route":1}}')!.members.map((m) => m.key),
      ['payload', '__proto__'],
    );
  });

  it('returns null for non-objects and throws on broken structure', () => {
    assert.equal(scan('[1]'), null);
    assert.throws(() => scan('{"a":1'), /expected ',' or '}'/);
    assert.throws(() => scan('{"a":"x'), /unterminated string/);
    assert.throws(() => scan('{"a":1}x'), /unexpected data/);
    assert.throws(() => scan('{"a":NaN}'), /expected a value/);
    assert.throws(() => scan('{"a":01}'), /expected ','/);
    assert.throws(() => scan('{"a":"\t"}'), /control character/); // a raw tab inside a string
  });

  it('bounds nesting everywhere, the skipped member included', () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    assert.ok(scan(`{"h":${deep(MAX_NESTING - 1)}}`));
    assert.throws(() => scan(`{"h":${deep(MAX_NESTING)}}`), /nesting deeper than/);
    assert.throws(() => scan(`{"payload":${deep(100_000)}}`, 'payload'), /nesting deeper than/);
  });

  it('notices integers too wide for 64 bits in the skipped member only where they are integers', () => {
    const wide = (payload: string) => scan(`{"payload":${payload}}`, 'payload')!.wideIntegers;
    assert.equal(wide('18446744073709551616'), true);
    assert.equal(wide('[1,-9223372036854775809]'), true);
    assert.equal(wide('{"a":[123456789012345678901234567890]}'), true);
    assert.equal(
      wide('[0.0021060533511106927, 1e1234567890123456789, 12345678901234567890.5, "12345678901234567890"]'),
      false,
    );
    assert.equal(wide('[123456789012345678]'), false);
  });
});

const SEED = process.env.SCAN_SEED ? Number(process.env.SCAN_SEED) : Date.now() % 2 ** 31;
const RUNS = Number(process.env.SCAN_RUNS ?? 2000);

function readerAccepts(text: string): boolean {
  const buf = Buffer.from(text);
  try {
    const start = skipSpace(buf, 0);
    return skipSpace(buf, validate(buf, start, buf.length, 0)) === buf.length;
  } catch (err) {
    if (err instanceof JsonScanError) return false;
    throw err;
  }
}

function parseAccepts(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** JSON texts with the spacing, escapes and numbers a hand-written one may have. */
const document = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v, null, 2)),
  fc.constantFrom(
    '{"a" : [1 , -0.5e+10 , "\\u00e9\\ud800\\n"] , "b":{}}',
    '[ ]',
    '{ }',
    '"\\/"',
    '-0',
    '1E-7',
    '[[[[]]]]',
  ),
);

/** An edit of a text: a position and what to put there (nothing: a deletion). */
const edit = fc.tuple(
  fc.nat(),
  fc.constantFrom(
    '',
    '"',
    '\\',
    '{',
    '}',
    '[',
    ']',
    ',',
    ':',
    '-',
    '+',
    '.',
    'e',
    '0',
    '1',
    'x',
    ' ',
    '\t',
    '\u0001',
    'u',
    'n',
    't',
    'f',
    'é',
  ),
  fc.boolean(),
);

function applyEdits(text: string, edits: Array<[number, string, boolean]>): string {
  let out = text;
  for (const [at, insert, replace] of edits) {
    const i = out.length === 0 ? 0 : at % (out.length + 1);
    out = out.slice(0, i) + insert + out.slice(replace ? i + 1 : i);
  }
  return out;
}

const mutated = fc
  .tuple(document, fc.array(edit, { minLength: 1, maxLength: 3 }))
  .map(([text, edits]) => applyEdits(text, edits));

describe(`JSON reader fuzzing (seed ${SEED})`, () => {
  it('accepts exactly what JSON.parse accepts, on valid and mutated texts', () => {
    fc.assert(
      fc.property(fc.oneof(document, mutated), (text) => {
        assert.equal(readerAccepts(text), parseAccepts(text), `text: ${JSON.stringify(text)}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("accepts exactly what Python's json accepts (NaN and Infinity refused, as the shim does)", () => {
    const texts = fc.sample(fc.oneof(document, mutated), { seed: SEED, numRuns: RUNS });
    const python = spawnSync(
      'python3',
      [
        '-c',
        `import json, sys
def refuse(name): raise ValueError(name)
for line in sys.stdin:
    try:
        json.loads(json.loads(line), parse_constant=refuse)
        print(1)
    except (ValueError, RecursionError):
        print(0)`,
      ],
      { input: `${texts.map((t) => JSON.stringify(t)).join('\n')}\n`, encoding: 'utf8' },
    );
    assert.equal(python.status, 0, python.stderr);
    const verdicts = python.stdout.trim().split('\n');
    const disagreements = texts.filter((t, i) => readerAccepts(t) !== (verdicts[i] === '1'));
    assert.deepEqual(disagreements.slice(0, 5), [], `seed ${SEED}: the reader and Python disagree`);
  });

  it('finds the members JSON.parse finds, the last of each name winning', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom('a', 'payload', '__proto__', 'constructor', 'é', ''),
          fc.jsonValue({ maxDepth: 3 }),
        ),
        fc.boolean(),
        (obj, dup) => {
          let text = JSON.stringify(obj, null, dup ? 1 : 0);
          if (dup && text !== '{}') text = text.replace('{', '{"a": [1, {"x": "}"}],'); // a duplicate before the real one
          const buf = Buffer.from(text);
          const scan = scanObject(buf, 0, buf.length, { depth: 1, skipped: 'payload' });
          assert.ok(scan);
          const parsed = JSON.parse(text) as Record<string, unknown>;
          for (const key of Object.keys(parsed)) {
            const m = lastMember(scan.members, key);
            assert.ok(m, `member ${key} not found in ${text}`);
            assert.deepEqual(JSON.parse(buf.toString('utf8', m.start, m.end)), parsed[key]);
          }
          assert.equal(new Set(scan.members.map((m) => m.key)).size, Object.keys(parsed).length);
        },
      ),
      { seed: SEED, numRuns: RUNS / 4 },
    );
  });

  it('the envelope parser answers every mutated envelope with an envelope or a WireError, and accepts only JSON', () => {
    const envelope = fc
      .tuple(
        fc.jsonValue({ maxDepth: 3 }),
        fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
      )
      .map(([payload, headers]) =>
        JSON.stringify({ id: 'x', route: { actors: ['a', 'b'], current: 0, metadata: headers }, headers, payload }),
      );
    fc.assert(
      fc.property(fc.tuple(envelope, fc.array(edit, { maxLength: 3 })), ([text, edits]) => {
        const mutatedText = applyEdits(text, edits);
        let accepted = false;
        try {
          const e = parseRequest(Buffer.from(mutatedText), true);
          // What is built from it must not throw either
          handlerMeta(e);
          payloadModeResponse(e, [e.payload]);
          accepted = true;
        } catch (err) {
          if (!(err instanceof WireError)) throw err;
        }
        // Accepted means JSON (the payload is Python's to check, so only the rest is held to JSON.parse here)
        if (accepted && !parseAccepts(mutatedText)) {
          const e = parseRequest(Buffer.from(mutatedText), true);
          assert.ok(
            !parseAccepts(e.payload.toString()),
            `accepted non-JSON outside the payload: ${JSON.stringify(mutatedText)}`,
          );
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});
