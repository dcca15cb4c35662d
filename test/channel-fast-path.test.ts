/**
 * The channel's hot path is read and written at fixed offsets on both sides (channel.ts, the shim's
 * codec section): it must give exactly what the generic MessagePack codecs give, on every Python the
 * runtime supports. And the soft time limit's lazy clock must fire for a call that overruns, never for
 * one that ended; and so must the connections' shared deadlines.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { Deadlines } from '../src/socket/deadlines.js';
import { CallClock } from '../src/worker/call-clock.js';
import { decodeOk, encodeCall } from '../src/worker/channel.js';
import { pyenvPython, ROOT, sleep } from './helpers.js';

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

describe('CallClock (the soft time limit without a timer per message)', () => {
  it('fires for a call past its deadline, never for calls that ended, across many short calls', async () => {
    const clock = new CallClock();
    const fired: string[] = [];
    for (let i = 0; i < 50; i++) {
      clock.start(40, () => fired.push(`short ${i}`));
      clock.stop();
    }
    const started = Date.now();
    let firedAt = 0;
    clock.start(60, () => {
      fired.push('long');
      firedAt = Date.now();
    });
    await sleep(300);
    assert.deepEqual(fired, ['long']);
    assert.ok(firedAt - started >= 59, `fired after ${firedAt - started} ms, before its 60 ms deadline`);
    clock.start(30, () => fired.push('after'));
    clock.stop();
    await sleep(100);
    assert.deepEqual(fired, ['long']);
  });
});

describe('Deadlines (every connection timeout under one timer)', () => {
  it('fires what is due in order, never what was cancelled, and forgets cancelled deadlines at once', async () => {
    const deadlines = new Deadlines(50);
    const fired: string[] = [];
    // One message at a time: a read timeout set and cancelled, then a reaper set and cancelled.
    for (let i = 0; i < 1000; i++) deadlines.cancel(deadlines.add(() => fired.push(`cancelled ${i}`)));
    assert.equal(deadlines.size, 0);
    const started = Date.now();
    const times: number[] = [];
    deadlines.add(() => {
      fired.push('first');
      times.push(Date.now() - started);
      // A connection failed by its timeout is answered and then reaped: a deadline added while firing.
      deadlines.add(() => fired.push('added while firing'));
    });
    await sleep(10);
    const second = deadlines.add(() => fired.push('second'));
    deadlines.add(() => fired.push('third'));
    deadlines.cancel(second);
    await sleep(200);
    assert.deepEqual(fired, ['first', 'third', 'added while firing']);
    assert.ok((times[0] ?? 0) >= 49, `fired after ${times[0]} ms, before its 50 ms`);
    assert.equal(deadlines.size, 0);
  });
});
