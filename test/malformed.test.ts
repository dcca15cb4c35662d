import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { asError, env, type Runtime, rawExchange, startRuntime } from './helpers.js';

let rt: Runtime;
before(async () => {
  rt = await startRuntime({
    handler: 'basic.echo',
    env: { ASYA_MAX_MESSAGE_SIZE: String(16 * 1024 * 1024), ASYA_READ_TIMEOUT: '2' },
  });
});
after(async () => {
  await rt.stop();
});

async function parsingError(body: Buffer | string): Promise<{ message: string; type: string }> {
  const answer = await rt.sendRaw(typeof body === 'string' ? Buffer.from(body) : body);
  const e = asError(answer);
  assert.equal(e.error, 'msg_parsing_error', JSON.stringify(e));
  assert.equal(typeof e.details.message, 'string');
  return e.details;
}

async function stillServes(): Promise<void> {
  assert.deepEqual(await rt.send(env({ alive: true })), [
    { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: { alive: true } },
  ]);
}

describe('malformed requests are answered, never dropped', () => {
  it('empty frame', async () => {
    assert.match((await parsingError('')).message, /empty request frame/);
  });

  it('JSON values that are not objects: null, array, string, number, boolean', async () => {
    assert.match((await parsingError('null')).message, /must be a JSON object, got null/);
    assert.match((await parsingError('[1,2]')).message, /got an array/);
    assert.match((await parsingError('"x"')).message, /got a string/);
    assert.match((await parsingError('12')).message, /got a number/);
    assert.match((await parsingError('true')).message, /got a boolean/);
  });

  it('a 100 000-deep nested array, as the frame and as the payload', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    assert.match((await parsingError(deep)).message, /got an array/);
    const inPayload = await parsingError(`{"route":{"actors":["a"]},"payload":${deep}}`);
    assert.equal(inPayload.type, 'RecursionError');
    const inHeaders = await parsingError(`{"route":{"actors":["a"]},"headers":${deep},"payload":1}`);
    assert.match(inHeaders.message, /headers/);
    await stillServes();
  });

  it('invalid UTF-8', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"route":{"actors":["a"]},"payload":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}'),
    ]);
    const e = await parsingError(bad);
    assert.equal(e.type, 'UnicodeDecodeError');
  });

  it('invalid JSON: syntax, trailing data, NaN literals, bad payload content, raw control characters', async () => {
    for (const text of [
      '{"route": {"actors": ["a"]}, "payload": }',
      '{"route": {"actors": ["a"]}, "payload": 1} extra',
      '{"route": {"actors": ["a"]}, "payload": 1',
      '{"route": {"actors": ["a"]}, "payload": [1,,2]}',
      '{"route": {"actors": ["a"]}, "payload": NaN}',
      '{"route": {"actors": ["a"]}, "payload": {"v": Infinity}}',
      '{"route": {"actors": ["a"]}, "payload": "a\nb"}',
      '{"route": {"actors": ["a"] "x": 1}, "payload": 1}',
      "{'route': {}}",
    ]) {
      const e = await parsingError(text);
      assert.match(e.type, /JSONDecodeError|ValueError/, text);
    }
    await stillServes();
  });

  it('envelope rules: payload, route, actors, current, headers, id', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ route: { actors: ['a'] } }, /missing required field 'payload'/],
      [{ payload: 1 }, /missing required field 'route'/],
      [{ route: 'a', payload: 1 }, /'route' must be an object, got a string/],
      [{ route: {}, payload: 1 }, /'route.actors' must be an array, got nothing/],
      [{ route: { actors: 'a' }, payload: 1 }, /'route.actors' must be an array/],
      [{ route: { actors: [] }, payload: 1 }, /'route.actors' must not be empty/],
      [{ route: { actors: [1] }, payload: 1 }, /route.actors\[0\] must be a string/],
      [{ route: { actors: ['a'], current: '0' }, payload: 1 }, /'route.current' must be an integer, got a string/],
      [{ route: { actors: ['a'], current: 0.5 }, payload: 1 }, /'route.current' must be an integer/],
      [{ route: { actors: ['a'], current: null }, payload: 1 }, /'route.current' must be an integer, got null/],
      [{ route: { actors: ['a'], current: -1 }, payload: 1 }, /route.current=-1 is out of range for 1 actors/],
      [{ route: { actors: ['a'], current: 2 }, payload: 1 }, /route.current=2 is out of range/],
      [{ route: { actors: ['a'] }, headers: [], payload: 1 }, /'headers' must be an object, got an array/],
      [{ route: { actors: ['a'] }, id: 5, payload: 1 }, /'id' must be a string, got a number/],
    ];
    for (const [envelope, pattern] of cases) {
      const e = await parsingError(JSON.stringify(envelope));
      assert.match(e.message, pattern, JSON.stringify(envelope));
    }
  });

  it('accepts current == len(actors) (end of route) and a null payload', async () => {
    const answer = await rt.send({ route: { actors: ['a'], current: 1 }, payload: null });
    assert.deepEqual(answer, []); // echo of None is an abort
  });

  it('a length prefix over ASYA_MAX_MESSAGE_SIZE is answered without reading the body', async () => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(2 ** 31); // a 2 GiB claim, and no body at all
    const answer = await rawExchange(rt.socketPath, null, 5000, head);
    assert.ok(answer);
    const e = asError(JSON.parse(answer.toString()));
    assert.equal(e.error, 'message_too_large');
    assert.match(e.details.message, /2147483648 bytes exceeds ASYA_MAX_MESSAGE_SIZE=16777216/);
    await stillServes();
  });

  it('a client that closes mid-frame does not disturb the next one', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(rt.socketPath, () => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(1000);
        s.end(Buffer.concat([head, Buffer.from('{"payload":')]));
      });
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
    await rt.waitForLog((l) => /closed the connection mid-frame \(received 15 of 1004 bytes\)/.test(l.msg));
    await stillServes();
  });

  it('a silent client is answered with connection_error after ASYA_READ_TIMEOUT while others are served', async () => {
    const silent = rawExchange(rt.socketPath, null, 10_000);
    await stillServes();
    const answer = await silent;
    assert.ok(answer);
    const e = asError(JSON.parse(answer.toString()));
    assert.equal(e.error, 'connection_error');
    assert.match(e.details.message, /ASYA_READ_TIMEOUT=2s \(received 0 of at least 4 bytes\)/);
  });
});

describe('validation off', () => {
  it('skips the rules but still needs an object with a payload and a route', async () => {
    const r = await startRuntime({ handler: 'basic.echo', env: { ASYA_ENABLE_VALIDATION: 'false' } });
    try {
      assert.deepEqual(await r.send({ route: { actors: [] }, headers: 'h', id: 5, payload: 1 }), [
        { route: { actors: [], current: 1 }, headers: 'h', payload: 1 },
      ]);
      assert.equal(asError(await r.sendRaw(Buffer.from('null'))).error, 'msg_parsing_error');
      assert.match(asError(await r.send({ route: { actors: ['a'] } })).details.message, /payload/);
    } finally {
      await r.stop();
    }
  });
});
