/**
 * The handler's context: a handler with a `context` parameter learns the message's id, route, headers
 * and deadline, sees cancelled() flip when its client leaves or its deadline passes (an async one is
 * cancelled), logs with the message's id and reports its own metrics; a message already past its
 * deadline is answered without calling the handler; a CUDA out-of-memory error leaves nothing behind for
 * the next message. Real supervisor, real Python, real socket.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  asError,
  HANDLERS,
  ROOT,
  type Runtime,
  scrape,
  seeded,
  startRuntime,
  tempDir,
  until,
  waitForFile,
} from './helpers.js';

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

function envelope(payload: unknown, extra: Record<string, unknown> = {}) {
  return { id: 'ctx-1', route: { actors: ['a', 'b'], current: 0 }, payload, ...extra };
}

async function first(rt: Runtime, message: unknown): Promise<Record<string, unknown>> {
  const answer = (await rt.send(message)) as Array<{ payload: Record<string, unknown> }>;
  assert.equal(answer.length, 1, JSON.stringify(answer));
  return answer[0]!.payload ?? (answer[0] as unknown as Record<string, unknown>);
}

/**
 * Send a message and close the connection once `leave` resolves, without reading an answer; resolves with
 * the time of the close (seconds since the epoch).
 */
function sendAndLeave(socketPath: string, message: unknown, leave: () => Promise<unknown>): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify(message));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    const sock = net.connect(socketPath, () =>
      sock.write(Buffer.concat([head, body]), () =>
        leave().then(() => {
          sock.destroy();
          resolve(Date.now() / 1000);
        }, reject),
      ),
    );
    sock.on('error', () => undefined);
  });
}

/** Once the handler has written `file`: its text. */
function fileText(file: string, timeoutMs = 10_000): Promise<string> {
  return until(
    `the handler to write ${path.basename(file)}`,
    () => fs.existsSync(file) && fs.readFileSync(file, 'utf8'),
    timeoutMs,
  );
}

/** Leave once the handler has signalled (payload.started) that it is running the call. */
const whenRunning = (started: string) => () => waitForFile(started, 'the handler running the call');
const atOnce = async () => undefined;

describe('context: what the handler learns', () => {
  for (const mode of ['payload', 'envelope'] as const) {
    it(`id, route, headers (copies, {} when absent), deadline and remaining(), in ${mode} mode`, async () => {
      const handler = mode === 'payload' ? 'context_handlers.describe' : 'context_handlers.describe_envelope';
      const rt = await startRuntime({ handler, env: { ASYA_HANDLER_TIMEOUT: '30', ASYA_HANDLER_MODE: mode } });
      const before = Date.now() / 1000;
      const got = await first(rt, envelope({ x: 1 }, { headers: { trace_id: 't-1' }, deadline: iso(before + 10) }));
      assert.equal(got.id, 'ctx-1');
      assert.deepEqual(got.route, { actors: ['a', 'b'], current: 0 });
      assert.deepEqual(got.headers, { trace_id: 't-1' });
      assert.ok(Math.abs((got.deadline as number) - (before + 10)) < 0.01, `the envelope's deadline: ${got.deadline}`);
      assert.ok((got.remaining as number) > 8 && (got.remaining as number) <= 10, `remaining ${got.remaining}`);
      assert.equal(got.cancelled, false);
      // No envelope deadline: the handler's time limit is the deadline; no headers: {}.
      const limited = await first(rt, envelope({ x: 2 }));
      assert.deepEqual(limited.headers, {});
      assert.ok(Math.abs((limited.deadline as number) - (Date.now() / 1000 + 30)) < 2, `deadline ${limited.deadline}`);
      // The earlier of the two wins.
      const later = await first(rt, envelope({ x: 3 }, { deadline: iso(Date.now() / 1000 + 3600) }));
      assert.ok((later.deadline as number) < Date.now() / 1000 + 31);
      await rt.stop();
    });
  }

  it('no deadline and no time limit: deadline and remaining() are None; a handler without context is called as before', async () => {
    const rt = await startRuntime({ handler: 'context_handlers.describe' });
    const got = await first(rt, envelope({ x: 1 }));
    assert.equal(got.deadline, null);
    assert.equal(got.remaining, null);
    await rt.stop();
    const plain = await startRuntime({ handler: 'context_handlers.plain' });
    assert.deepEqual(await first(plain, envelope({ x: 1 }, { deadline: iso(Date.now() / 1000 + 60) })), {
      payload: { x: 1 },
    });
    const loaded = await plain.waitForLog((l) => l.msg === 'handler loaded');
    assert.equal(loaded.level, 'info');
    await plain.stop();
  });
});

describe('deadline: a message already past it', () => {
  it('is answered deadline_exceeded without calling the handler; an unreadable one is ignored with one WARNING', async () => {
    const dir = tempDir();
    const rt = await startRuntime({ handler: 'context_handlers.plain' });
    const past = iso(Date.now() / 1000 - 2.5);
    const error = asError(await rt.send(envelope({ x: 1 }, { deadline: past })));
    assert.equal(error.error, 'deadline_exceeded');
    assert.match(error.details.message, new RegExp(`deadline ${past.replace(/[.]/g, '\\.')} had passed 2\\.\\d+ s`));
    for (const bad of ['tomorrow', '2026-13-01T00:00:00Z', '2026-12-03T07:00:00', 42]) {
      assert.deepEqual(await first(rt, envelope({ x: 1 }, { deadline: bad })), { payload: { x: 1 } });
    }
    const warnings = rt.logs.filter((l) => l.level === 'warn' && String(l.msg).includes('not an RFC 3339 time'));
    assert.equal(warnings.length, 1, 'one WARNING a minute at most');
    await rt.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('envelope mode forwards deadline untouched', async () => {
    const rt = await startRuntime({
      handler: 'envelope_handlers.current_plus_one',
      env: { ASYA_HANDLER_MODE: 'envelope' },
    });
    const deadline = '2099-12-03T07:00:00.123456+05:30';
    const answer = (await rt.send(envelope({ x: 1 }, { deadline }))) as Array<Record<string, unknown>>;
    assert.equal(answer[0]?.deadline, deadline);
    await rt.stop();
  });
});

describe('context: cancellation', () => {
  it('cancelled() flips within 100 ms of the client leaving, while the handler runs; the answer is dropped and logged', async () => {
    const dir = tempDir();
    const rt = await startRuntime({ handler: 'context_handlers.watch' });
    const mark = path.join(dir, 'mark');
    const started = path.join(dir, 'started');
    const left = await sendAndLeave(rt.socketPath, envelope({ mark, started }), whenRunning(started));
    const noticed = Number(await fileText(mark));
    // 100 ms is the target (docs/handler-guide.md); 5x for a loaded machine.
    assert.ok(noticed - left < 0.5, `noticed ${((noticed - left) * 1000).toFixed(0)} ms after the client left`);
    const dropped = await rt.waitForLog((l) => l.msg === 'the client left before the answer: it was dropped');
    // The runtime goes on: the next message is served.
    const ok = await first(
      rt,
      envelope({ mark: path.join(dir, 'mark2') }, { id: 'ctx-2', deadline: iso(Date.now() / 1000 + 0.3) }),
    );
    assert.equal(ok as unknown, 'cancelled', 'the deadline passing flips it too');
    // Dropped is not answered: no 'message handled' line for it; the next message has its own.
    await rt.waitForLog((l) => l.msg === 'message handled' && l.id === 'ctx-2');
    assert.equal(dropped.id, 'ctx-1');
    const handled = rt.logs.filter((l) => l.msg === 'message handled').map((l) => l.id);
    assert.deepEqual(handled, ['ctx-2']);
    await rt.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a client that leaves while its large message is still being read and decoded: cancelled() is True from the start', async () => {
    const dir = tempDir();
    const rt = await startRuntime({ handler: 'context_handlers.watch' });
    for (let i = 0; i < 3; i++) {
      const mark = path.join(dir, `mark-${i}`);
      const pad = Array.from({ length: 200_000 }, (_, n) => ({ n }));
      const left = await sendAndLeave(rt.socketPath, envelope({ mark, pad }), atOnce);
      const noticed = Number(await fileText(mark));
      assert.ok(
        noticed - left < 1,
        `round ${i}: noticed ${((noticed - left) * 1000).toFixed(0)} ms after the client left`,
      );
    }
    // A cancellation never reaches the next call.
    const next = path.join(dir, 'next');
    const deadline = iso(Date.now() / 1000 + 0.5);
    const [answer] = (await rt.send(envelope({ mark: next }, { deadline }))) as Array<{ payload: unknown }>;
    assert.equal(answer?.payload, 'cancelled', "by its deadline, not by an earlier call's client");
    await rt.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an async handler is cancelled (CancelledError inside it) when its client leaves', async () => {
    const dir = tempDir();
    const rt = await startRuntime({ handler: 'context_handlers.wait_async' });
    const mark = path.join(dir, 'mark');
    const started = path.join(dir, 'started');
    const left = await sendAndLeave(rt.socketPath, envelope({ mark, started }), whenRunning(started));
    const text = await fileText(mark);
    assert.match(text, /cancelled=True/);
    assert.ok(Number(text.split(' ')[0]) - left < 0.5);
    await rt.waitForLog((l) => l.msg === 'the client left before the answer: it was dropped');
    assert.ok(!rt.logs.some((l) => l.level === 'error'), 'a cancelled call nobody waits for is no error');
    await rt.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('context: log and metrics', () => {
  it("context.log's records carry the message's id", async () => {
    const rt = await startRuntime({ handler: 'context_handlers.log' });
    await rt.send(envelope({ what: 'apples' }, { id: 'log-7' }));
    const line = await rt.waitForLog((l) => l.msg === 'working on apples');
    assert.equal(line.id, 'log-7');
    assert.equal(line.logger, 'asya.handler');
    assert.equal(line.level, 'warn');
    await rt.stop();
  });

  it('counters, gauges and histograms at /metrics as asya_handler_<name>, adding up across recycling', async () => {
    const rt = await startRuntime({
      handler: 'context_handlers.count',
      // One worker: a pool defers recycling while another worker is not serving (docs/supervision.md).
      env: { ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_WORKER_MAX_MESSAGES: '1' },
    });
    const port = Number((await rt.waitForLog((l) => l.msg === 'serving metrics')).port);
    const pids = new Set<unknown>();
    const message = envelope({
      inc: [{ name: 'widgets', value: 2, labels: { color: 'red' } }],
      set: [{ name: 'temperature', value: 21.5 }],
      observe: [{ name: 'batch_seconds', value: 0.2, labels: { model: 'm' } }],
    });
    for (let i = 0; i < 10; i++) pids.add((await first(rt, message)).pid);
    assert.equal(pids.size, 10, `recycled between messages: ${[...pids]}`);
    const text = (await scrape(port)).body;
    assert.match(text, /^asya_handler_widgets_total\{color="red"\} 20$/m);
    assert.match(text, /^asya_handler_temperature 21\.5$/m);
    assert.match(text, /^asya_handler_batch_seconds_bucket\{le="0\.25",model="m"\} 10$/m);
    assert.match(text, /^asya_handler_batch_seconds_count\{model="m"\} 10$/m);
    // What Prometheus would refuse is an error in the handler that made it, never a broken /metrics.
    for (const bad of [
      { inc: [{ name: 'bad-name' }] },
      { inc: [{ name: 'ok', labels: { __reserved: 'x' } }] },
      { inc: [{ name: 'widgets', value: -1, labels: { color: 'red' } }] },
      { set: [{ name: 'widgets', value: 1, labels: { color: 'red' } }] },
      { observe: [{ name: 'h', value: 1, labels: { le: '1' } }] },
      { inc: [{ name: 'ends_in_newline\n' }] },
      { inc: [{ name: 'label_newline', labels: { 'l\n': '1' } }] },
      { set: [{ name: 'widgets_total', value: 1, labels: { color: 'red' } }] },
      { set: [{ name: 'batch_seconds_count', value: 1, labels: { model: 'm' } }] },
    ]) {
      const error = asError(await rt.send(envelope(bad)));
      assert.equal(error.error, 'processing_error', JSON.stringify(error));
      assert.equal(error.details.type, 'ValueError');
    }
    // An int beyond any float (JSON allows it; JavaScript cannot write it, so the frame is written by hand).
    const huge = `{"id":"h","route":{"actors":["a","b"],"current":0},"payload":{"inc":[{"name":"huge","value":1${'0'.repeat(400)}}]}}`;
    const hugeError = asError(await rt.sendRaw(Buffer.from(huge)));
    assert.equal(hugeError.details.type, 'ValueError', JSON.stringify(hugeError));
    const after = (await scrape(port)).body;
    assert.match(after, /^asya_handler_widgets_total\{color="red"\} 20$/m);
    assert.doesNotMatch(after, /bad-name|__reserved/);
    await rt.stop();
  });
});

describe('CUDA out of memory', () => {
  for (const variant of ['torch.cuda.OutOfMemoryError', 'RuntimeError("CUDA out of memory...")', 'wrapped']) {
    it(`${variant}: processing_error, then what the failed call held is freed and the cache emptied before the next message`, async () => {
      const rt = await startRuntime({
        handler: 'context_handlers.oom',
        pythonPath: [path.join(HANDLERS, 'fake_cuda')],
      });
      const wrapped = variant === 'wrapped';
      const error = asError(await rt.send(envelope({ runtime_error: variant.startsWith('RuntimeError'), wrapped })));
      assert.equal(error.error, 'processing_error');
      assert.match(error.details.message, wrapped ? /inference failed/ : /CUDA out of memory/);
      const check = await first(rt, envelope({ check: true }));
      assert.equal(check.tensor_alive, false, 'the failed call no longer holds its tensors');
      assert.equal(check.cache_emptied, 1, 'torch.cuda.empty_cache() ran once');
      await rt.stop();
    });
  }
});

describe("metric names and labels: generated, against Prometheus's rule (seeded)", () => {
  it('the shim accepts exactly the names and label names Prometheus does', () => {
    const { seed, next } = seeded();
    const alphabet = ['a', 'Z', '_', ':', '0', '9', '-', '.', ' ', '\n', 'é', '\u0000', '☃', '__'];
    const word = () => Array.from({ length: 1 + next(6) }, () => alphabet[next(alphabet.length)]).join('');
    const cases = Array.from({ length: 200 }, () => ({ name: word(), label: word() }));
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'python-shim'))})
from asya_shim import Metrics
out = []
for case in json.load(sys.stdin):
    result = []
    for kind, labels in (("name", {}), ("label", {case["label"]: "v"})):
        try:
            Metrics().inc(case["name"] if kind == "name" else "ok", **labels)
            result.append(True)
        except ValueError:
            result.append(False)
    out.append(result)
print(json.dumps(out))
`;
    const run = spawnSync('python3', ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const got = JSON.parse(run.stdout) as Array<[boolean, boolean]>;
    // Prometheus's data model (JavaScript's $ matches only at the very end: no trailing newline slips by).
    const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
    const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
    cases.forEach(({ name, label }, i) => {
      assert.equal(got[i]![0], NAME.test(name), `seed ${seed}: name ${JSON.stringify(name)}`);
      assert.equal(
        got[i]![1],
        LABEL.test(label) && !label.startsWith('__'),
        `seed ${seed}: label ${JSON.stringify(label)}`,
      );
    });
  });
});

describe('context in a plain pytest', () => {
  it('Context and its metrics can be built by hand, as docs/handler-guide.md shows', () => {
    const script = `
import sys, time
sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'python-shim'))})
sys.path.insert(0, ${JSON.stringify(HANDLERS)})
from asya_shim import Context
import context_handlers
ctx = Context(id="t-1", headers={"a": 1}, deadline=time.time() + 5)
assert context_handlers.describe({"x": 1}, context=ctx)["remaining"] > 4
context_handlers.count({"inc": [{"name": "n", "labels": {"k": "v"}}]}, context=ctx)
assert ctx.metrics.recorded == [["counter", "n", 1.0, [["k", "v"]]]], ctx.metrics.recorded
ctx.cancel()
assert ctx.cancelled()
print("ok")
`;
    const run = spawnSync('python3', ['-c', script], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), 'ok');
  });
});
