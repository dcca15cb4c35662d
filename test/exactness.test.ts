/**
 * Differential test of exactness: generated envelope texts go through the real runtime (both modes,
 * stdlib json and orjson), and what the handler saw and what came back are compared with Python's
 * stdlib json on the same text (test/oracle/exactness_oracle.py). Forwarded bytes (route, headers)
 * are compared byte for byte.
 *
 * Replay a failure with the seed it prints: EXACTNESS_SEED=<seed> node scripts/run-tests.mjs test/exactness.test.ts
 * EXACTNESS_RUNS sets the number of cases per configuration (default 40).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_NESTING } from '../src/envelope/json-scan.js';
import { asError, ROOT, type Runtime, rawExchange, startRuntime, TEST_VENV_PYTHON } from './helpers.js';
import { joined, objectText, space, stringText, valueText } from './json-arbitraries.js';

const SEED = process.env.EXACTNESS_SEED ? Number(process.env.EXACTNESS_SEED) : Date.now() % 2 ** 31;
const RUNS = Number(process.env.EXACTNESS_RUNS ?? 40);

interface Case {
  request: string;
  /** The route's text and the same text with current set to 1, as it must come back in payload mode. */
  route: string;
  routeNext: string;
  headers: string | null;
}

/** A whole envelope: members in any order, with unknown and prototype-named members beside them. */
const envelopeCase: fc.Arbitrary<Case> = fc
  .record({
    metadata: objectText,
    routeExtra: fc.option(fc.tuple(fc.constantFrom('"__proto__"', '"constructor"', '"x"'), valueText), {
      nil: undefined,
    }),
    headers: fc.option(objectText, { nil: null }),
    payload: valueText,
    id: fc.option(stringText, { nil: undefined }),
    unknown: fc.array(
      fc.tuple(fc.constantFrom('"zz"', '"__proto__"', '"constructor"', '"prototype"', '"parent_id"'), valueText),
      { maxLength: 2 },
    ),
    gap: space,
    order: fc.integer({ min: 0, max: 1000 }),
  })
  .map(({ metadata, routeExtra, headers, payload, id, unknown, gap, order }) => {
    const extra = routeExtra ? `,${routeExtra[0]}:${routeExtra[1]}` : '';
    const route = `{"actors":["a","b"],${gap}"current":0,"metadata":${gap}${metadata}${extra}}`;
    const members = [`"route":${route}`, `"payload":${gap}${payload}`];
    if (headers !== null) members.push(`"headers":${headers}`);
    if (id !== undefined) members.push(`"id":${id}`);
    for (const [k, v] of unknown) members.push(`${k}:${v}`);
    // A fixed shuffle from the generated number
    const shuffled = members
      .map((m, i) => ({ m, k: (order * (i + 7)) % 13 }))
      .sort((x, y) => x.k - y.k)
      .map((x) => x.m);
    return {
      request: joined(shuffled, '{', '}', gap),
      route,
      routeNext: route.replace(`${gap}"current":0`, `${gap}"current":1`),
      headers,
    };
  });

// ---------------------------------------------------------------- the oracle ---

class Oracle {
  private readonly proc: ChildProcessWithoutNullStreams;
  private buffered = '';
  private waiting: Array<(line: string) => void> = [];

  constructor() {
    this.proc = spawn('python3', [path.join(ROOT, 'test', 'oracle', 'exactness_oracle.py')], { stdio: 'pipe' });
    this.proc.stdout.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString();
      for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
    this.proc.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  }

  check(mode: string, request: string, response: Buffer): Promise<string[]> {
    return new Promise((resolve) => {
      this.waiting.push((line) => resolve((JSON.parse(line) as { problems: string[] }).problems));
      this.proc.stdin.write(
        `${JSON.stringify({ mode, request: Buffer.from(request).toString('base64'), response: response.toString('base64') })}\n`,
      );
    });
  }

  close(): void {
    this.proc.stdin.end();
  }
}

// ---------------------------------------------------------------- the tests ---

/** python3 here has orjson 3.8 (no depth limit, big integers as floats); the test venv has a recent one. */
const CONFIGS = [
  { mode: 'payload', codec: 'json', python: undefined },
  { mode: 'payload', codec: 'auto', python: undefined },
  { mode: 'envelope', codec: 'json', python: undefined },
  { mode: 'envelope', codec: 'auto', python: undefined },
  { mode: 'payload', codec: 'orjson', python: TEST_VENV_PYTHON },
] as const;

describe(`exactness against Python's json (seed ${SEED}, ${RUNS} cases per configuration)`, () => {
  const oracle = new Oracle();
  const runtimes = new Map<string, Runtime>();

  before(async () => {
    await Promise.all(
      CONFIGS.map(async ({ mode, codec, python }) => {
        const handler = mode === 'payload' ? 'exactness.seen_payload' : 'exactness.seen_envelope';
        const rt = await startRuntime({
          handler,
          env: {
            ASYA_HANDLER_MODE: mode,
            ASYA_JSON_CODEC: codec,
            ASYA_LOG_LEVEL: 'WARNING',
            ASYA_PYTHONEXECUTABLE: python,
          },
        });
        runtimes.set(`${mode}/${codec}`, rt);
      }),
    );
  });

  after(async () => {
    oracle.close();
    await Promise.all([...runtimes.values()].map((rt) => rt.stop()));
  });

  for (const { mode, codec, python } of CONFIGS) {
    it(`${mode} mode, ASYA_JSON_CODEC=${codec}${python ? ' (orjson 3.9+)' : ''}: the handler sees json.loads of the request, and values come back unchanged`, async () => {
      const rt = runtimes.get(`${mode}/${codec}`)!;
      let lastProblems: string[] = [];
      await fc
        .assert(
          fc.asyncProperty(envelopeCase, async (c) => {
            const answer = await rawExchange(rt.socketPath, Buffer.from(c.request));
            assert.ok(answer, 'no answer');
            const problems = await oracle.check(mode, c.request, answer);
            if (mode === 'payload') {
              // Forwarded bytes leave as they arrived: the route with only current changed, the headers as sent.
              const text = answer.toString('utf8');
              if (!text.includes(`"route":${c.routeNext}`)) problems.push(`route bytes changed: ${text.slice(0, 300)}`);
              if (c.headers !== null && !text.includes(`"headers":${c.headers},"payload":`))
                problems.push('headers bytes changed');
            }
            lastProblems = problems.length ? [...problems, `answer: ${answer.toString('utf8').slice(0, 2000)}`] : [];
            assert.deepEqual(problems, []);
          }),
          { seed: SEED, numRuns: RUNS, endOnFailure: true },
        )
        .catch((err: unknown) => {
          throw new Error(`replay with EXACTNESS_SEED=${SEED}\n${lastProblems.join('\n')}\n${(err as Error).message}`);
        });
    });
  }

  it('nesting: served exactly up to the bound, msg_parsing_error beyond it in every member, and the next message is served', async () => {
    const rt = runtimes.get('payload/auto')!;
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const place = (where: string, value: string) => {
      // A Map: in an object literal, members['__proto__'] = ... would set the prototype, not a member
      const members = new Map([
        ['route', '{"actors":["a","b"],"current":0}'],
        ['payload', '1'],
      ]);
      if (where === 'metadata') members.set('route', `{"actors":["a","b"],"current":0,"metadata":${value}}`);
      else members.set(where, value);
      return `{${[...members].map(([k, v]) => `"${k}":${v}`).join(',')}}`;
    };
    for (const where of ['payload', 'headers', 'metadata', 'zz', '__proto__']) {
      const holder = where === 'headers' ? (v: string) => `{"h":${v}}` : (v: string) => v;
      for (const depth of [1, 10, 100, 500, 900, MAX_NESTING, 10_000, 100_000]) {
        const request = place(where, holder(deep(depth)));
        const answer = await rawExchange(rt.socketPath, Buffer.from(request));
        assert.ok(answer, `${where} at depth ${depth}: no answer`);
        const parsed = JSON.parse(answer.toString('utf8')) as Array<Record<string, unknown>>;
        if (depth <= 900) {
          const problems = await oracle.check('payload', request, answer);
          assert.deepEqual(problems, [], `${where} at depth ${depth}`);
        } else {
          const err = asError(parsed);
          assert.equal(err.error, 'msg_parsing_error', `${where} at depth ${depth}`);
          assert.equal(err.details.type, 'RecursionError');
        }
      }
    }
    assert.equal(rt.child.exitCode, null);
  });
});
