/** The byte-level examples in docs/protocol.md, replayed against the real runtime. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, ROOT, type Runtime, rawExchange, startRuntime } from './helpers.js';

const doc = fs.readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8');
const examples = [...doc.matchAll(/request:\s+((?:[0-9a-f]{2} ){4}) (.+)\nresponse:\s+((?:[0-9a-f]{2} ){4}) (.+)\n/g)];

let rt: Runtime;
before(async () => {
  rt = await startRuntime({ handler: 'basic.echo' });
});
after(async () => {
  await rt.stop();
});

describe('docs/protocol.md byte-level examples', () => {
  it('has examples to check', () => assert.ok(examples.length >= 2));
  for (const [, reqLen, reqBody, resLen, resBody] of examples) {
    it(`request ${reqBody?.slice(0, 40)}`, async () => {
      const body = Buffer.from(reqBody as string);
      assert.equal(
        Buffer.from((reqLen as string).replace(/ /g, ''), 'hex').readUInt32BE(),
        body.length,
        'documented request length',
      );
      const answer = await rawExchange(rt.socketPath, body);
      assert.equal(answer?.toString(), resBody);
      assert.equal(
        Buffer.from((resLen as string).replace(/ /g, ''), 'hex').readUInt32BE(),
        answer?.length,
        'documented response length',
      );
    });
  }
});

describe('asya-runtime commands in the docs', () => {
  const files = [
    'README.md',
    'examples/README.md',
    ...fs
      .readdirSync(path.join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
    ...fs
      .readdirSync(path.join(ROOT, 'docs', 'deploy'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/deploy/${f}`),
  ];
  // Every `asya-runtime COMMAND ...` (or `node dist/cli.js COMMAND ...`) line in a code block or inline code
  const uses = files.flatMap((file) =>
    [
      ...fs
        .readFileSync(path.join(ROOT, file), 'utf8')
        .matchAll(/(?:asya-runtime|node dist\/cli\.js) (call|check|send)\b([^`\n]*)/g),
    ].map((m) => ({
      file,
      command: m[1] as string,
      flags: [...(m[2] ?? '').matchAll(/(?<=\s)--[a-z-]+/g)].map((f) => f[0]),
    })),
  );

  it('name real commands and options (checked against each command --help)', () => {
    assert.ok(uses.length >= 8, `found ${uses.length}`);
    const help = new Map<string, string>();
    for (const { file, command, flags } of uses) {
      if (!help.has(command))
        help.set(command, execFileSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8' }));
      for (const flag of flags)
        assert.match(
          help.get(command)!,
          new RegExp(`\\s${flag}\\b`),
          `${file}: asya-runtime ${command} has no option ${flag}`,
        );
    }
  });
});
