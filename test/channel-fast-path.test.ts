/**
 * The channel's hot path is read and written at fixed offsets on both sides (channel.ts, the shim's
 * codec section): it must give exactly what the generic MessagePack codecs give, on every Python the
 * runtime supports. (The supervisor's side alone: test/internals/channel.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { decodeOk, encodeCall } from '../src/worker/channel.js';
import { pyenvPython, ROOT } from './helpers.js';

const SHIM_DIR = path.join(ROOT, 'python-shim');
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/**
 * Runs `script` in Python with the shim importable as `s`; `input` (JSON) is on stdin as `cases`.
 * Returns what the script printed, parsed as JSON.
 */
function python(interpreter: string, script: string, input: unknown): unknown {
  const prelude = `import json, sys\nsys.path.insert(0, ${JSON.stringify(SHIM_DIR)})\nimport asya_shim as s\ncases = json.load(sys.stdin)\n`;
  const out = execFileSync(interpreter, ['-c', prelude + script], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 2 ** 28,
  });
  return JSON.parse(out);
}

const interpreters = [
  ['python3', 'python3'],
  ['3.7', pyenvPython('3.7')],
  ['3.13', pyenvPython('3.13')],
] as const;

const SIZES = [0, 1, 15, 16, 255, 256, 65_535, 65_536, 70_000];

// Besides the cases listed in each test, generated ones: sizes on and around every MessagePack length
// boundary (fixstr/bin8/bin16/bin32, fixarray/array16) and anywhere below 70 000, any bytes.
// Replay a failure with the seed it prints: CHANNEL_SEED=<seed> node scripts/run-tests.mjs test/channel-fast-path.test.ts
const SEED = process.env.CHANNEL_SEED ? Number(process.env.CHANNEL_SEED) : Date.now() % 2 ** 31;
const RUNS = Number(process.env.CHANNEL_RUNS ?? 60);
const size = fc.oneof(
  fc.constantFrom(0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536),
  fc.integer({ min: 0, max: 70_000 }),
);
const bytes = size.chain((n) => fc.uint8Array({ minLength: n, maxLength: n })).map((a) => Buffer.from(a));
const generatedCalls = fc
  .sample(
    fc.record({
      payload: bytes,
      meta: fc.option(bytes, { nil: undefined }),
      wideIntegers: fc.option(fc.boolean(), { nil: undefined }),
    }),
    { seed: SEED, numRuns: RUNS },
  )
  .map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as typeof c);
const generatedReplies = fc.sample(
  fc.array(fc.oneof(fc.constantFrom(0, 1, 31, 32, 255, 256, 65_535, 65_536), fc.integer({ min: 0, max: 3_000 })), {
    maxLength: 20,
  }),
  { seed: SEED, numRuns: RUNS },
);

for (const [name, interpreter] of interpreters) {
  describe(`channel fast path, Python ${name} (seed ${SEED}, ${RUNS} generated cases)`, {
    skip: interpreter ? false : `no Python ${name} under pyenv`,
  }, () => {
    it('the shim reads every call encodeCall writes as its generic decoder does', () => {
      const calls = [
        { payload: Buffer.from('{"a":1}') },
        { payload: Buffer.from('[]'), meta: Buffer.from('{"id":"x","route":{"actors":["a"]}}') },
        { payload: Buffer.from('123456789012345678901234567890'), wideIntegers: true },
        { payload: Buffer.from('"é"'), meta: Buffer.from('{}'), wideIntegers: true },
        { payload: Buffer.alloc(70_000, 0x61) },
        ...generatedCalls,
      ];
      // The body after the 4-byte length, as the shim's read_message hands it to unpack().
      const bodies = calls.map((c) => Buffer.concat(encodeCall(c)).subarray(4).toString('hex'));
      const verdicts = python(
        interpreter as string,
        `plain = lambda d: {k: (bytes(v).hex() if isinstance(v, memoryview) else v) for k, v in d.items()}
out = []
for h in cases:
    body = memoryview(bytes.fromhex(h))
    fast, generic = s.unpack(body), s._unpack_at(body, 0)[0]
    out.append([plain(fast) == plain(generic), plain(fast)])
print(json.dumps(out))`,
        bodies,
      ) as Array<[boolean, Record<string, unknown>]>;
      verdicts.forEach(([same, msg], i) => {
        const call = calls[i]!;
        assert.ok(same, `call ${i}: fast and generic decoders differ`);
        assert.equal(msg.t, 'call');
        assert.equal(msg.p, call.payload.toString('hex'));
        assert.equal(msg.m, call.meta?.toString('hex'));
        // The flag travels only when set: a false one is left off the wire, and absent reads as false.
        assert.equal(msg.w, call.wideIntegers === true ? true : undefined);
      });
    });

    it('the supervisor reads every ok reply the shim writes as msgpackr does, as views of the frame', () => {
      const replies = [[], SIZES, SIZES.slice(0, 3).concat(Array(17).fill(2)), ...generatedReplies];
      const frames = python(
        interpreter as string,
        `out = []
for sizes in cases:
    items = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    fast, generic = [], []
    s.pack_ok(items, fast)
    s.pack({"t": "ok", "o": items}, generic)
    assert b"".join(fast) == b"".join(generic), sizes
    out.append(b"".join(fast).hex())
print(json.dumps(out))`,
        replies,
      ) as string[];
      frames.forEach((hex, i) => {
        const frame = Buffer.from(hex, 'hex');
        const fast = decodeOk(frame);
        assert.ok(fast, `reply ${i} not read by the fast path`);
        assert.deepEqual(fast, unpackr.unpack(frame));
        assert.deepEqual(
          fast.o.map((b) => b.length),
          replies[i],
        );
        for (const item of fast.o) if (item.length > 0) assert.equal(item.buffer, frame.buffer, 'a view, not a copy');
      });
    });
  });
}
