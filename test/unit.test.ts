/** Unit tests for the pure parts: configuration, the JSON scanner, envelope rules, framing. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../src/config.js';
import { envelopeModeResponse, parseRequest, payloadModeResponse, routeProblem } from '../src/envelope/envelope.js';
import { MAX_NESTING, type Member, scanObject } from '../src/envelope/json-scan.js';
import { WireError } from '../src/errors.js';
import { BATCH_BYTES, BATCH_MS, Batching, type LogSink } from '../src/log-sink.js';
import { batched, createLogger } from '../src/logger.js';
import { FrameCorrupt, FrameDecoder, FrameTooLarge } from '../src/socket/framing.js';
import { restartDelay } from '../src/worker/policy.js';

describe('config', () => {
  it('defaults', () => {
    const r = parseConfig({ ASYA_HANDLER: 'm.f' });
    assert.ok(r.ok);
    assert.equal(r.config.socketPath, '/var/run/asya/asya-runtime.sock');
    assert.equal(r.config.readyFile, '/var/run/asya/runtime-ready');
    assert.equal(r.config.socketChmod, 0o666);
    assert.equal(r.config.mode, 'payload');
    assert.equal(r.config.validate, true);
    assert.equal(r.config.maxMessageSize, 64 * 1024 * 1024);
    assert.equal(r.config.handlerTimeoutMs, null);
    assert.equal(r.config.logLevel, 'info');
  });

  it('parses every form', () => {
    const r = parseConfig({
      ASYA_HANDLER: 'a.b.C.m',
      ASYA_HANDLER_MODE: 'Envelope',
      ASYA_SOCKET_CHMOD: '660',
      ASYA_ENABLE_VALIDATION: 'FALSE',
      ASYA_INCLUDE_METADATA: '1',
      ASYA_HANDLER_TIMEOUT: '2.5',
      ASYA_LOG_LEVEL: 'warning',
      ASYA_SOCKET_PATH: '/tmp/x/app.sock',
    });
    assert.ok(r.ok);
    assert.equal(r.config.mode, 'envelope');
    assert.equal(r.config.socketChmod, 0o660);
    assert.equal(r.config.validate, false);
    assert.equal(r.config.includeMetadata, true);
    assert.equal(r.config.handlerTimeoutMs, 2500);
    assert.equal(r.config.logLevel, 'warn');
    assert.equal(r.config.readyFile, '/tmp/x/runtime-ready');
    assert.equal(
      parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_CHMOD: '' }).ok &&
        (parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_CHMOD: '' }) as { config: { socketChmod: unknown } }).config
          .socketChmod,
      null,
    );
  });

  it('legacy module forms', () => {
    const a = parseConfig({ ASYA_PROCESS_MODULE: 'my_app.handler:run' });
    const b = parseConfig({ ASYA_PROCESS_MODULE: 'my_app.handler' });
    assert.ok(a.ok && b.ok);
    assert.equal(a.config.handler, 'my_app.handler.run');
    assert.equal(b.config.handler, 'my_app.handler.process');
  });

  it('a socket name that is a directory or the ready file is refused', () => {
    for (const name of ['.', '..', 'runtime-ready']) {
      const r = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_NAME: name });
      assert.ok(!r.ok && r.errors.some((e) => e.startsWith(`ASYA_SOCKET_NAME=${JSON.stringify(name)}`)), name);
    }
    const p = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_PATH: '/tmp/x/runtime-ready' });
    assert.ok(!p.ok && p.errors.some((e) => e.startsWith('ASYA_SOCKET_PATH=')));
  });

  it('errors name the variable and value', () => {
    const r = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_MAX_MESSAGE_SIZE: '1e9', ASYA_LOG_LEVEL: 'x' });
    assert.ok(!r.ok);
    assert.ok(r.errors.some((e) => e.startsWith('ASYA_MAX_MESSAGE_SIZE="1e9"')));
    assert.ok(r.errors.some((e) => e.startsWith('ASYA_LOG_LEVEL="x"')));
  });
});

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

describe('envelope rules', () => {
  const req = (o: unknown) => parseRequest(Buffer.from(JSON.stringify(o)), true);

  it('keeps the payload as the exact request bytes', () => {
    const raw = Buffer.from('{"route":{"actors":["a"]},"payload": {"b":  1.50}}');
    const e = parseRequest(raw, true);
    assert.equal(e.payload.toString(), '{"b":  1.50}');
    assert.equal(e.route.current, 0);
  });

  it('route rule', () => {
    const input = { actors: ['a', 'b', 'c'], current: 1 };
    assert.equal(routeProblem(input, { actors: ['a', 'b'], current: 2 }), null);
    assert.equal(routeProblem(input, { actors: ['a', 'b', 'x', 'y'], current: 1 }), null);
    assert.match(routeProblem(input, { actors: ['a'], current: 0 }) ?? '', /erased/);
    assert.match(routeProblem(input, { actors: ['z', 'b'], current: 1 }) ?? '', /already-processed actor was modified/);
    assert.match(routeProblem(input, { actors: ['a', 'z'], current: 1 }) ?? '', /current actor changed/);
    // end of route: everything is processed
    assert.match(routeProblem({ actors: ['a'], current: 1 }, { actors: ['b'], current: 1 }) ?? '', /modified/);
  });

  it('payload mode splices raw payload bytes into the response', () => {
    const e = req({ route: { actors: ['a', 'b'], current: 0, metadata: { m: 1 } }, headers: { h: 'x' }, payload: 0 });
    const body = Buffer.concat(payloadModeResponse(e, [Buffer.from('{"r":1}'), Buffer.from('2')])).toString();
    assert.equal(
      body,
      '[{"route":{"actors":["a","b"],"current":1,"metadata":{"m":1}},"headers":{"h":"x"},"payload":{"r":1}},' +
        '{"route":{"actors":["a","b"],"current":1,"metadata":{"m":1}},"headers":{"h":"x"},"payload":2}]',
    );
    assert.equal(Buffer.concat(payloadModeResponse(e, [])).toString(), '[]');
  });

  it('envelope mode validates and names the broken output', () => {
    const e = req({ route: { actors: ['a', 'b'], current: 0 }, payload: 0 });
    const good = Buffer.from('{"route":{"actors":["a","c"],"current":1}}');
    const bad = Buffer.from('{"route":{"actors":["x"],"current":0}}');
    assert.equal(
      Buffer.concat(envelopeModeResponse(e, [[good, Buffer.from('5')]], true)).toString(),
      '[{"route":{"actors":["a","c"],"current":1},"payload":5}]',
    );
    assert.throws(
      () =>
        envelopeModeResponse(
          e,
          [
            [good, Buffer.from('5')],
            [bad, Buffer.from('5')],
          ],
          true,
        ),
      (err: unknown) =>
        err instanceof WireError &&
        err.code === 'processing_error' &&
        /^Invalid output envelope\[1\/2\]/.test(err.message),
    );
    assert.equal(
      Buffer.concat(
        envelopeModeResponse(
          e,
          [
            [Buffer.from('{}'), Buffer.from('1')],
            [bad, null],
          ],
          false,
        ),
      ).toString(),
      '[{"payload":1},{"route":{"actors":["x"],"current":0}}]',
    );
  });
});

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
});

describe('restart backoff', () => {
  it('is immediate first, then doubles up to a bound', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => restartDelay(n)),
      [0, 250, 500, 1000, 2000],
    );
    assert.equal(restartDelay(50), 15_000);
  });
});

describe('log lines: the per-message line batched, every other line at once and in order', () => {
  /** A sink that records each write(2) the batching sink asks of it. */
  function recording(): LogSink & { writes: string[] } {
    const writes: string[] = [];
    return { kind: 'file', onRecovered: null, writes, write: (text) => writes.push(text), flush: async () => {} };
  }
  const msgs = (text: string) =>
    text
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);

  it('holds batched lines until another line, the timer or a flush; never reorders', async () => {
    const inner = recording();
    const sink = new Batching(inner);
    const log = createLogger('info', sink, false);
    const perMessage = batched(log);
    assert.equal(batched(log), perMessage, 'one batched child per logger');
    perMessage.info('handled 1');
    perMessage.info('handled 2');
    assert.equal(inner.writes.length, 0, 'held');
    log.warn('a warning');
    assert.deepEqual(
      inner.writes.map(msgs),
      [['handled 1', 'handled 2'], ['a warning']],
      'held lines first, in one write',
    );
    perMessage.info('handled 3');
    log.info('not batched either');
    assert.deepEqual(inner.writes.slice(2).map(msgs), [['handled 3'], ['not batched either']]);
    perMessage.info('handled 4');
    const deadline = Date.now() + BATCH_MS * 25;
    while (inner.writes.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(inner.writes.slice(4).map(msgs), [['handled 4']], 'written by the timer');
    perMessage.info('handled 5');
    await sink.flush(100);
    assert.deepEqual(inner.writes.slice(5).map(msgs), [['handled 5']], 'written by flush');
  });

  it('writes a batch at once past 16 KiB; a child of a batched logger is not batched', () => {
    const inner = recording();
    const log = createLogger('info', new Batching(inner), false);
    const perMessage = batched(log);
    const long = 'x'.repeat(1000);
    let lines = 0;
    while (inner.writes.length === 0 && lines < 100) {
      perMessage.info(long);
      lines++;
    }
    const batch = inner.writes[0] as string;
    const lastLine = batch.slice(batch.lastIndexOf('\n', batch.length - 2) + 1);
    assert.equal(msgs(batch).length, lines, 'every line in the one write');
    assert.ok(
      batch.length >= BATCH_BYTES && batch.length - lastLine.length < BATCH_BYTES,
      'written as it crossed 16 KiB',
    );
    perMessage.child({ worker: 1 }).info('from a child');
    assert.equal(inner.writes.length, 2, 'only the marked logger is batched');
  });
});
