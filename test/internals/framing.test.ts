/** socket/framing.ts: the sidecar's length-prefixed frames, decoded as the bytes arrive, and framed for it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameCorrupt, FrameDecoder, FrameTooLarge, frameChunks, JOIN_FRAME_BYTES } from '../../src/socket/framing.js';

describe('framing', () => {
  it('decodes frames split at every byte boundary', () => {
    const frames = [Buffer.from('hello'), Buffer.alloc(0), Buffer.from('x'.repeat(300))];
    const wire = Buffer.concat(
      frames.flatMap((f) => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE(f.length);
        return [h, f];
      }),
    );
    for (const step of [1, 3, 7, wire.length]) {
      const got: string[] = [];
      const d = new FrameDecoder(1000);
      for (let i = 0; i < wire.length; i += step) d.push(wire.subarray(i, i + step), (f) => got.push(f.toString()));
      assert.deepEqual(
        got,
        frames.map((f) => f.toString()),
      );
    }
  });

  it('rejects an oversized length before allocating', () => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(2 ** 31);
    assert.throws(() => new FrameDecoder(1024).push(h, () => undefined), FrameTooLarge);
  });

  it("channel mode: checks each frame's first bytes as they arrive, before the rest of a claimed 2 GiB", () => {
    const expect = { bytes: 3, test: (head: Buffer) => head.equals(Buffer.from([0x81, 0xa1, 0x74])) };
    const good = Buffer.from([0x81, 0xa1, 0x74, 0xa2, 0x6f, 0x6b]);
    const wire = Buffer.concat([Buffer.from([0, 0, 0, good.length]), good, Buffer.from([0, 0, 0, good.length]), good]);
    for (const step of [1, 2, 5, wire.length]) {
      const got: Buffer[] = [];
      const d = new FrameDecoder(2 ** 32 - 1, { expect });
      for (let i = 0; i < wire.length; i += step) d.push(wire.subarray(i, i + step), (f) => got.push(Buffer.from(f)));
      assert.deepEqual(got, [good, good]);
    }
    // A 2 GiB length followed by a real message's own prefix: caught at the third byte.
    const d = new FrameDecoder(2 ** 32 - 1, { expect });
    d.push(Buffer.from([0x80, 0, 0, 0, 0, 0]), () => assert.fail('no frame'));
    assert.deepEqual(d.progress(), { received: 6, expected: 4 + 2 ** 31 });
    assert.throws(() => d.push(Buffer.from([0, 6]), () => undefined), FrameCorrupt);
    assert.throws(
      () => new FrameDecoder(100, { expect }).push(Buffer.from([0, 0, 0, 0]), () => undefined),
      FrameCorrupt,
      'an empty frame is no message',
    );
  });

  it('frames a body as its length and bytes: one buffer up to JOIN_FRAME_BYTES, the chunks as they are above', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 255 }),
        (sizes, fill) => {
          const body = sizes.map((n, i) => Buffer.alloc(n, (fill + i) % 256));
          const total = sizes.reduce((a, b) => a + b, 0);
          const framed = frameChunks(body);
          const whole = Buffer.concat(framed);
          assert.equal(whole.readUInt32BE(0), total);
          assert.deepEqual(whole.subarray(4), Buffer.concat(body));
          if (4 + total <= JOIN_FRAME_BYTES) assert.equal(framed.length, 1, `${total} bytes: one write`);
          else {
            assert.equal(framed.length, body.length + 1, `${total} bytes: the length, then the chunks`);
            for (const [i, chunk] of body.entries()) assert.equal(framed[i + 1], chunk, 'not copied');
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
