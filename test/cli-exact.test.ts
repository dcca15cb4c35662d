/**
 * Exact end to end through the CLI: generated JSON texts (integers beyond 2^53 and 2^64, `-0.0`,
 * `1.0`, 1e400, escapes, lone surrogates, duplicate keys, non-ASCII) go through the real
 * `asya-runtime call` and `send` to a handler that reports what it saw at the level of repr() and
 * returns values computed in Python (test/handlers/cli_exact.py); test/oracle/cli_exact_oracle.py
 * calls the same handler on Python's json.loads of each text and compares with what was printed:
 * byte for byte where the shim's stdlib encoder wrote the answer, compact and on a terminal.
 *
 * One process per command, every message in it (JSON lines). Replay a failure with the seed it
 * prints: ASYA_TEST_SEED=<seed> node scripts/run-tests.mjs test/cli-exact.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CLI, HANDLERS, onTerminal, ROOT, type Runtime, runNode, seeded, startRuntime, tempDir } from './helpers.js';
import { objectText, valueText, withoutSpace } from './json-arbitraries.js';

const { seed } = seeded();
const GENERATED = 40;

/** Texts the issue named, then generated ones. */
const FIXED = [
  '{"user_id": 9007199254740993}',
  '[1.0, -0.0, 1180591620717411303424, 1E400, -1e400, 1e-400, 0.1e1, 1E+2, 3.141592653589793238462643383279]',
  '{"a": 1, "a": 2.50, "\\u0000": "\\ud800 \\ud83d\\ude00 \\udfff", "é": "中文 😀"}',
  '-0.0',
  '"\\ud800"',
];
const generated = fc.sample(valueText, { seed, numRuns: GENERATED });
/** Raw newlines occur only between tokens (JSON strings cannot hold one), so a space can stand for each. */
const oneLine = (text: string) => text.replace(/\n/g, ' ');
const MESSAGES = [...FIXED, ...generated.map(oneLine)];
/** Messages given whole, newlines and all, as --payload arguments. */
const MULTILINE = generated.filter((t) => t.includes('\n')).slice(0, 3);

interface Case {
  message: string;
  /** What was printed for it (null: only the pretty output as a whole is checked). */
  printed: string | null;
  whole: boolean;
  headers: string | null;
}

function oracle(cases: Case[], options: { exact: boolean; pretty?: string }): string[] {
  const run = spawnSync('python3', [path.join(ROOT, 'test', 'oracle', 'cli_exact_oracle.py')], {
    input: JSON.stringify({ cases, exact: options.exact, pretty: options.pretty ?? null }),
    encoding: 'utf8',
    maxBuffer: 2 ** 28,
  });
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as { problems: string[] }).problems;
}

function assertNoProblems(problems: string[]): void {
  assert.deepEqual(problems, [], `replay with ASYA_TEST_SEED=${seed}\n${problems.join('\n')}`);
}

/** Lines of stdout, one per printed value. */
const lines = (stdout: string) => stdout.split('\n').filter((l) => l !== '');

const cli = (args: string[], input = '') => runNode([CLI, ...args], { input, env: { PYTHONPATH: HANDLERS } });

describe(`CLI exactness against Python's json (seed ${seed}, ${MESSAGES.length + MULTILINE.length} messages a command)`, () => {
  it('call: the handler sees json.loads of the text given; payloads print as the stdlib encoder wrote them', async () => {
    const r = await cli(
      [
        'call',
        '--handler',
        'cli_exact.facts',
        '--codec',
        'json',
        '--payloads-only',
        '-',
        ...MULTILINE.flatMap((m) => ['--payload', m]),
      ],
      `${MESSAGES.join('\n')}\n`,
    );
    assert.equal(r.code, 0, `seed ${seed}\n${r.stderr}`);
    const printed = lines(r.stdout);
    const messages = [...MESSAGES, ...MULTILINE];
    assert.equal(printed.length, messages.length, r.stdout);
    // The issue's own example, readable here; the oracle checks the rest
    assert.ok(printed[0]!.startsWith(`{"repr":"{'user_id': 9007199254740993}",`), printed[0]);
    assert.ok(
      printed[0]!.endsWith(
        '"computed":[1.0,1180591620717411303424,-0.0,-18446744073709551617,1e+300,1.7976931348623157e+308,5e-324,0.30000000000000004,1e+16,1e-07,"\\ud800"]}',
      ),
      printed[0],
    );
    assertNoProblems(
      oracle(
        messages.map((message, i) => ({ message, printed: printed[i]!, whole: false, headers: null })),
        { exact: true },
      ),
    );
  });

  it('call on a terminal: indented, each value as the encoder wrote it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'messages.jsonl');
    fs.writeFileSync(file, `${MESSAGES.join('\n')}\n`);
    // On a terminal: stdout and stderr alike, so nothing but errors is logged (and --payloads-only: no REPORT)
    const { out: stdout } = await onTerminal([
      'call',
      '--handler',
      'cli_exact.facts',
      '--codec',
      'json',
      '--payloads-only',
      '--log-level',
      'ERROR',
      '--file',
      file,
    ]);
    fs.rmSync(dir, { recursive: true, force: true });
    const pretty = stdout.replace(/\r\n/g, '\n');
    assert.match(pretty, /^ {2}"computed": \[\n {4}1\.0,\n {4}1180591620717411303424,\n {4}-0\.0,$/m);
    assertNoProblems(
      oracle(
        MESSAGES.map((message) => ({ message, printed: null, whole: false, headers: null })),
        { exact: false, pretty },
      ),
    );
  });
});

describe(`send: exact to a running runtime (seed ${seed})`, () => {
  let rt: Runtime;
  before(async () => {
    rt = await startRuntime({ handler: 'cli_exact.facts', env: { ASYA_LOG_LEVEL: 'WARNING' } });
  });
  after(async () => {
    await rt.stop();
  });

  it('payloads: whole answers, one line each, the values as Python encoded them', async () => {
    const r = await cli(['send', '--socket', rt.socketPath], `${MESSAGES.join('\n')}\n`);
    assert.equal(r.code, 0, r.stderr);
    const printed = lines(r.stdout);
    assert.equal(printed.length, MESSAGES.length, r.stdout);
    assertNoProblems(
      oracle(
        MESSAGES.map((message, i) => ({ message, printed: printed[i]!, whole: true, headers: null })),
        { exact: false },
      ),
    );
  });

  it('--envelope: the envelope text sent as given; forwarded headers print as they arrived', async () => {
    const headers = fc.sample(objectText, { seed: seed + 1, numRuns: MESSAGES.length }).map(oneLine);
    const envelopes = MESSAGES.map(
      (payload, i) =>
        `{"route": {"actors": ["a", "b"], "current": 0}, "headers": ${headers[i]}, "payload": ${payload}}`,
    );
    const r = await cli(['send', '--socket', rt.socketPath, '--envelope'], `${envelopes.join('\n')}\n`);
    assert.equal(r.code, 0, r.stderr);
    const printed = lines(r.stdout);
    assert.equal(printed.length, MESSAGES.length, r.stdout);
    // Forwarded bytes: duplicate keys, 1.0 and all, only the whitespace between tokens gone
    for (const [i, line] of printed.entries())
      assert.ok(line.includes(`"headers":${withoutSpace(headers[i]!)}`), `seed ${seed}: ${headers[i]}\n${line}`);
    assertNoProblems(
      oracle(
        MESSAGES.map((message, i) => ({ message, printed: printed[i]!, whole: true, headers: headers[i]! })),
        { exact: false },
      ),
    );
  });
});
