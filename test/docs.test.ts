/** The byte-level examples in docs/protocol.md, replayed against the real runtime. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, type Runtime, rawExchange, startRuntime } from './helpers.js';

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
      assert.equal(Buffer.from((reqLen as string).replace(/ /g, ''), 'hex').readUInt32BE(), body.length, 'documented request length');
      const answer = await rawExchange(rt.socketPath, body);
      assert.equal(answer?.toString(), resBody);
      assert.equal(Buffer.from((resLen as string).replace(/ /g, ''), 'hex').readUInt32BE(), answer?.length, 'documented response length');
    });
  }
});
