import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { asError, type Runtime, startRuntime } from './helpers.js';

const runtimes = new Map<string, Promise<Runtime>>();
function rt(fn: string, extraEnv: Record<string, string> = {}): Promise<Runtime> {
  const key = `${fn} ${JSON.stringify(extraEnv)}`;
  let p = runtimes.get(key);
  if (!p) {
    p = startRuntime({ handler: `envelope_handlers.${fn}`, env: { ASYA_HANDLER_MODE: 'envelope', ...extraEnv } });
    runtimes.set(key, p);
  }
  return p;
}
after(async () => {
  for (const p of runtimes.values()) await (await p).stop();
});

const input = {
  id: 'e-1',
  parent_id: 'e-0',
  route: { actors: ['a', 'b', 'c'], current: 1, metadata: { tenant: 't1' } },
  headers: { trace_id: 'abc' },
  payload: { x: 1 },
};

async function outputs(fn: string, envelope: unknown = input): Promise<Array<Record<string, unknown>>> {
  return (await (await rt(fn)).send(envelope)) as Array<Record<string, unknown>>;
}

async function violation(fn: string, envelope: unknown = input): Promise<string> {
  const e = asError(await (await rt(fn)).send(envelope));
  assert.equal(e.error, 'processing_error');
  assert.equal(e.details.type, 'ValueError');
  return e.details.message;
}

describe('envelope mode', () => {
  it('hands the handler the whole envelope, current filled in, and keeps id, parent_id, headers, route fields', async () => {
    assert.deepEqual(await outputs('echo'), [input]);
    const seen = (await outputs('show', { route: { actors: ['a'] }, payload: 1, extra: true }))[0]?.payload as {
      saw: unknown;
    };
    assert.deepEqual(seen.saw, { route: { actors: ['a'], current: 0 }, extra: true, payload: 1 });
  });

  it("allows current += 1 (the seeds' dynamic routing)", async () => {
    const out = await outputs('current_plus_one');
    assert.deepEqual(out, [{ ...input, route: { ...input.route, current: 2 } }]);
  });

  it('allows adding and replacing future actors', async () => {
    assert.deepEqual((await outputs('add_future'))[0]?.route, { ...input.route, actors: ['a', 'b', 'c', 'd', 'e'] });
    assert.deepEqual((await outputs('replace_future'))[0]?.route, { ...input.route, actors: ['a', 'b', 'x', 'y'] });
    // seeds/002: ["a","b","c"] -> ["a","x","y"] at current=0
    const at0 = { ...input, route: { actors: ['a', 'b', 'c'], current: 0 } };
    assert.deepEqual((await outputs('replace_future', at0))[0]?.route, { actors: ['a', 'x', 'y'], current: 0 });
  });

  it('forbids erasing processed actors, naming the output and both routes', async () => {
    // seeds/002: ["a","b","c"] -> ["c","d"] at current=2
    const msg = await violation('erase_processed', { ...input, route: { actors: ['a', 'b', 'c'], current: 2 } });
    assert.match(msg, /^Invalid output envelope\[0\/1\]: /);
    assert.match(msg, /already-processed actors were erased: route\.actors\[0\.\.2\] must stay \["a","b","c"\]/);
    assert.match(msg, /input actors \["a","b","c"\] \(current=2\), output actors \["c","d"\] \(current=0\)/);
    const erased = await violation('truncate_all');
    assert.match(erased, /route\.actors' must not be empty/);
  });

  it('forbids modifying a processed actor', async () => {
    const msg = await violation('modify_processed');
    assert.match(msg, /an already-processed actor was modified: route\.actors\[0\] must stay "a", got "a-new"/);
  });

  it('forbids replacing the current actor', async () => {
    const msg = await violation('replace_current_actor');
    assert.match(msg, /the current actor changed: route\.actors\[1\] must stay "b", got "impostor"/);
  });

  it('checks every output against the envelope rules', async () => {
    assert.match(await violation('current_out_of_range'), /route\.current=99 is out of range for 3 actors/);
    assert.match(await violation('no_payload'), /missing required field 'payload'/);
    assert.match(
      await violation('not_a_dict'),
      /Invalid output envelope\[0\/1\]: must be a dict with 'payload' and 'route', got a string/,
    );
    assert.match(await violation('second_bad'), /^Invalid output envelope\[1\/2\]: /);
  });

  it('fans out envelopes and aborts with None', async () => {
    const out = await outputs('fanout');
    assert.equal(out.length, 3);
    assert.deepEqual(out[2], {
      id: 'e-1-2',
      parent_id: 'e-1',
      route: { ...input.route, current: 2 },
      headers: { trace_id: 'abc' },
      payload: { part: 2 },
    });
    assert.deepEqual(await outputs('abort'), []);
  });

  it('passes members it does not check through as Python encoded them, when validating too', async () => {
    assert.deepEqual(await outputs('extra_fields'), [{ ...input, status: 'extra top-level field' }]);
  });

  it('passes outputs through as returned when validation is off', async () => {
    const r = await rt('erase_processed', { ASYA_ENABLE_VALIDATION: 'false' });
    assert.deepEqual(await r.send(input), [{ ...input, route: { actors: ['c', 'd'], current: 0 } }]);
    const extra = await rt('extra_fields', { ASYA_ENABLE_VALIDATION: 'false' });
    assert.deepEqual(await extra.send(input), [{ ...input, status: 'extra top-level field' }]);
    const notDict = await rt('not_a_dict', { ASYA_ENABLE_VALIDATION: 'false' });
    assert.deepEqual(await notDict.send(input), ['not an envelope']);
  });
});

describe('envelope mode: an output whose route.current did not move', () => {
  it('is answered as returned, with one WARNING per load of the Python process, not one per message', async () => {
    const r = await rt('echo', { ASYA_WORKER_MAX_MESSAGES: '2', ASYA_LOG_LEVEL: 'INFO' });
    const unmoved = () => r.logs.filter((l) => l.level === 'warn' && /keeps route\.current=/.test(l.msg));
    const handled = (id: string) => r.waitForLog((l) => l.msg === 'message handled' && l.id === id);
    assert.deepEqual(await r.send({ ...input, id: 'u-1' }), [{ ...input, id: 'u-1' }]);
    await handled('u-1');
    assert.deepEqual(
      unmoved().map(({ id, output, current, actor }) => ({ id, output, current, actor })),
      [{ id: 'u-1', output: 0, current: 1, actor: 'b' }],
    );
    assert.match(
      unmoved()[0]!.msg,
      /^output envelope\[0\/1\] keeps route\.current=1 \(actor "b", this one\): the sidecar sends it back to this same actor/,
    );
    await r.send({ ...input, id: 'u-2' });
    await handled('u-2');
    assert.equal(unmoved().length, 1, 'the second message of the same load: no second warning');
    // ASYA_WORKER_MAX_MESSAGES=2 replaced the process: the new load warns again.
    await r.waitForLog((l) => l.reason === 'max_messages');
    await r.send({ ...input, id: 'u-3' });
    await handled('u-3');
    assert.deepEqual(
      unmoved().map((l) => l.id),
      ['u-1', 'u-3'],
    );
    // Moved on: no warning.
    const moved = await rt('current_plus_one', { ASYA_LOG_LEVEL: 'INFO' });
    await moved.send({ ...input, id: 'm-1' });
    await moved.waitForLog((l) => l.msg === 'message handled' && l.id === 'm-1');
    assert.equal(moved.logs.filter((l) => /keeps route\.current=/.test(l.msg)).length, 0);
  });
});
