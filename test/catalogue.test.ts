/**
 * The catalogues, held against their documentation: every wire error code the runtime can send is
 * described in docs/protocol.md (and nothing there is unknown to the code), every exit code is in the
 * one table of docs/deployment.md and in `asya-runtime --help`, with the same numbers, and every
 * environment variable the configuration reads is a row of docs/configuration.md.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VARIABLE_NAMES } from '../src/config.js';
import { ErrorCode, ExitCode } from '../src/errors.js';
import { CLI, ROOT, runNode } from './helpers.js';

const doc = (name: string) => fs.readFileSync(path.join(ROOT, 'docs', name), 'utf8');

describe('error catalogue', () => {
  it('every wire error code is a row of the error table in docs/protocol.md, and every row is a code', () => {
    // The table whose header is "| `error` | When | ..."
    const table = doc('protocol.md')
      .split(/^\| `error` \| When .*$/m)[1]!
      .split(/\n(?!\|)/)[0]!;
    const rows = [...table.matchAll(/^\| `([a-z_]+)` \| /gm)].map((m) => m[1]!);
    assert.deepEqual(rows.sort(), Object.values(ErrorCode).sort());
  });

  it('every exit code is in the exit-code table of docs/deployment.md, and the table has no other', () => {
    const section = doc('deployment.md').split('## Exit codes')[1]!.split('\n## ')[0]!;
    const rows = [...section.matchAll(/^\| (\d+) \| (.+) \|$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(rows.sort(), Object.values(ExitCode).sort());
  });

  it('asya-runtime --help lists the same exit codes', async () => {
    const { stdout } = await runNode([CLI, '--help']);
    const listed = [...(/Exit codes:([\s\S]*)$/.exec(stdout)?.[1] ?? '').matchAll(/(\d+) \w/g)].map((m) =>
      Number(m[1]),
    );
    assert.deepEqual([...new Set(listed)].sort(), Object.values(ExitCode).sort());
  });
});

describe('configuration catalogue', () => {
  it('every variable the configuration reads is a row of the table in docs/configuration.md, and every row is one', () => {
    const rows = [...doc('configuration.md').matchAll(/^\| `(ASYA_[A-Z_]+)` \| /gm)].map((m) => m[1]!);
    assert.deepEqual([...rows].sort(), [...VARIABLE_NAMES].sort());
  });
});
