/**
 * worker/channel.ts, the supervisor's side alone: its fast path for ok replies leaves every other message
 * to msgpackr. (What the shim writes and reads against it, on every Python: test/channel-fast-path.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeOk } from '../../src/worker/channel.js';

describe('decodeOk leaves everything else to msgpackr', () => {
  it('returns null for other messages and for truncated or padded ok replies', () => {
    const ok = Buffer.from([0x82, 0xa1, 0x74, 0xa2, 0x6f, 0x6b, 0xa1, 0x6f, 0x91, 0xc4, 0x02, 0x31, 0x32]);
    assert.deepEqual(decodeOk(ok)?.o.map(String), ['12']);
    assert.equal(decodeOk(ok.subarray(0, ok.length - 1)), null);
    assert.equal(decodeOk(Buffer.concat([ok, Buffer.from([0])])), null);
    assert.equal(decodeOk(Buffer.from([0x82, 0xa1, 0x74, 0xa3, 0x65, 0x72, 0x72])), null); // {"t": "err"
    const badTag = Buffer.from(ok);
    badTag[9] = 0xa2; // a str where a bin belongs
    assert.equal(decodeOk(badTag), null);
  });
});
