/**
 * Issue #15, "see what it does": per-message context on the handler's lines, Python logging as
 * structured records, the per-message INFO line, tracebacks with the user's frames only, did-you-mean,
 * unencodable results named by path, no restart noise after `call` shut down, and Prometheus metrics
 * scraped over HTTP. Real runtime, real socket, real Python, logs read from its real stderr (JSON).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  asError,
  CLI,
  env,
  HANDLERS,
  type LogLine,
  pyenvPython,
  ROOT,
  type Runtime,
  runNode,
  runToExit,
  sample,
  scrape,
  startRuntime,
} from './helpers.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function noShimFrames(traceback: string): void {
  assert.doesNotMatch(traceback, /asya_shim\.py|<frozen importlib/, traceback);
}

describe('logs: every handler line names its message', () => {
  let rt: Runtime;
  before(async () => {
    rt = await startRuntime({ handler: 'observe.process', env: { ASYA_LOG_LEVEL: 'INFO' } });
  });
  after(async () => {
    await rt.stop();
  });

  it('print, stderr, native writes and logging records carry the id and the trace id', async () => {
    await rt.send(env({ n: 1 }, { id: 'obs-1', headers: { trace_id: 'trace-abc' } }));
    await rt.send(env({ n: 2 }, { id: 'obs-2', headers: { traceparent: TRACEPARENT } }));
    await rt.send(env({ n: 3 }, { id: 'obs-3' }));
    const record = await rt.waitForLog((l) => l.msg === 'message handled' && l.id === 'obs-3');
    assert.equal(record.level, 'info');
    const of = (id: string) => rt.logs.filter((l) => l.src === 'handler' && l.id === id);
    for (const [id, trace] of [
      ['obs-1', 'trace-abc'],
      ['obs-2', '4bf92f3577b34da6a3ce929d0e0e4736'],
      ['obs-3', undefined],
    ] as const) {
      const lines = of(id);
      const msgs = lines.map((l) => l.msg);
      for (const expected of [
        /^print from \d$/,
        /^stderr from \d$/,
        /^native write$/,
        /^info record \d$/,
        /^warning record$/,
        /^caught it$/,
      ]) {
        assert.ok(
          msgs.some((m) => expected.test(m)),
          `${id}: no line ${expected} in ${JSON.stringify(msgs)}`,
        );
      }
      for (const line of lines) assert.equal(line.trace_id, trace, JSON.stringify(line));
    }
  });

  it('logging records: level mapped, logger name, traceback of the user frames, ASYA_LOG_LEVEL applied', async () => {
    await rt.waitForLog((l) => l.msg === 'message handled' && l.id === 'obs-3');
    const lines = rt.logs.filter((l) => l.id === 'obs-1' && l.logger === 'observe.model');
    const by = (msg: string) => lines.find((l) => l.msg === msg);
    assert.equal(by('info record 1')?.level, 'info');
    assert.equal(by('warning record')?.level, 'warn');
    const caught = by('caught it') as LogLine;
    assert.equal(caught.level, 'error');
    assert.match(
      String(caught.traceback),
      /^Traceback \(most recent call last\):\n {2}File ".*observe\.py", line \d+, in process\n/,
    );
    assert.match(String(caught.traceback), /KeyError: 'missing'\n$/);
    noShimFrames(String(caught.traceback));
    assert.equal(
      rt.logs.some((l) => l.msg === 'debug record'),
      false,
      'DEBUG records are below ASYA_LOG_LEVEL=INFO',
    );
    // At import, before any message: a record without an id
    const imported = rt.logs.find((l) => l.msg === 'module imported');
    assert.equal(imported?.logger, 'observe.model');
    assert.equal(imported?.id, undefined);
  });

  it('one INFO line per message: id, duration, outcome, outputs, never the payload', async () => {
    const line = await rt.waitForLog((l) => l.msg === 'message handled' && l.id === 'obs-1');
    assert.equal(line.trace_id, 'trace-abc');
    assert.equal(line.outcome, 'ok');
    assert.equal(line.outputs, 2);
    assert.equal(typeof line.ms, 'number');
    assert.equal(JSON.stringify(line).includes('"n":'), false);
  });

  it('per-message lines are written in batches yet none is lost at shutdown, and none overtakes its own records', async () => {
    const burst = await startRuntime({ handler: 'observe.process', env: { ASYA_LOG_LEVEL: 'INFO' } });
    const ids = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    try {
      for (const id of ids) await burst.send(env({ n: 1 }, { id }));
    } finally {
      // SIGTERM right after the last answer: lines still waiting for their batch must be written first.
      assert.equal((await burst.stop()).code, 0);
    }
    const order = (pred: (l: LogLine) => boolean) => burst.logs.findIndex(pred);
    for (const id of ids) {
      const handled = order((l) => l.msg === 'message handled' && l.id === id);
      assert.ok(handled >= 0, `no 'message handled' line for ${id}`);
      assert.ok(
        order((l) => l.msg === 'caught it' && l.id === id) < handled,
        `${id}: its handler's last record comes first`,
      );
      const next = ids[ids.indexOf(id) + 1];
      if (next)
        assert.ok(
          handled < order((l) => l.msg === 'print from 1' && l.id === next),
          `${id}: before the next message's lines`,
        );
    }
    assert.equal(burst.logs.at(-1)?.msg, 'stopped');
  });

  it('ASYA_LOG_LEVEL=WARNING: Python drops INFO records; ASYA_LOG_MESSAGES=false: no per-message line', async () => {
    const quiet = await startRuntime({
      handler: 'observe.process',
      env: { ASYA_LOG_LEVEL: 'WARNING', ASYA_LOG_MESSAGES: 'false' },
    });
    try {
      await quiet.send(env({ n: 9 }, { id: 'quiet' }));
      await quiet.waitForLog((l) => l.msg === 'caught it');
      assert.equal(
        quiet.logs.some((l) => /^info record/.test(l.msg)),
        false,
      );
      assert.equal(quiet.logs.find((l) => l.msg === 'warning record')?.id, 'quiet');
      assert.equal(
        quiet.logs.some((l) => l.msg === 'message handled'),
        false,
      );
    } finally {
      await quiet.stop();
    }
  });

  it('a module that configured logging keeps its own handler, format and level', async () => {
    const own = await startRuntime({ handler: 'observe_configured.process', env: { ASYA_LOG_LEVEL: 'DEBUG' } });
    try {
      await own.send(env({}, { id: 'cfg' }));
      const line = await own.waitForLog((l) => /CONFIGURED/.test(l.msg));
      assert.equal(line.msg, "CONFIGURED WARNING configured: warning in the user's format");
      assert.equal(line.id, 'cfg');
      assert.equal(line.stream, 'stderr');
      assert.equal(
        own.logs.some((l) => /below the user's own level/.test(l.msg)),
        false,
      );
      assert.equal(
        own.logs.some((l) => l.logger !== undefined),
        false,
        'no second (structured) copy',
      );
    } finally {
      await own.stop();
    }
  });
});

describe('logs: lines printed while the handler loads', () => {
  it("name the process that then serves (not its reaper), as the 'handler loaded' line does", async () => {
    const rt = await startRuntime({ handler: 'prints_at_import.Model.process' });
    const loaded = await rt.waitForLog((l) => l.msg === 'handler loaded');
    const importing = await rt.waitForLog((l) => String(l.msg).startsWith('importing in '));
    const building = await rt.waitForLog((l) => String(l.msg).startsWith('building in '));
    for (const line of [importing, building]) {
      assert.equal(line.python_pid, loaded.python_pid, JSON.stringify(line));
      assert.equal(String(line.msg).split(' ').at(-1), String(loaded.python_pid));
    }
    await rt.stop();
  });
});

describe('errors a user can read', () => {
  it("tracebacks in wire answers and logs hold the user's frames only", async () => {
    const rt = await startRuntime({ handler: 'observe.nested' });
    try {
      const e = asError(await rt.send(env({}, { id: 'tb' })));
      assert.match(
        e.details.traceback,
        /^Traceback \(most recent call last\):\n {2}File ".*observe\.py", line \d+, in nested\n/,
      );
      assert.match(e.details.traceback, /in _helper\n[\s\S]*ValueError: deep down\n$/);
      noShimFrames(e.details.traceback);
      const line = await rt.waitForLog((l) => l.level === 'error' && l.id === 'tb');
      assert.equal(line.traceback, e.details.traceback);
      assert.equal(line.outcome, 'processing_error');
    } finally {
      await rt.stop();
    }
    const load = await runToExit({ handler: 'observe_import_error.process' });
    const fatal = load.logs.find((l) => l.level === 'fatal');
    assert.match(
      String(fatal?.traceback),
      /observe_import_error\.py", line \d+, in <module>\n[\s\S]*in _fail\n[\s\S]*RuntimeError: cannot load the weights/,
    );
    noShimFrames(String(fatal?.traceback));
  });

  for (const minor of ['3.7', '3.13']) {
    it(`a misspelled function or method suggests the near names (Python ${minor})`, async (t) => {
      const python = pyenvPython(minor);
      if (!python) return t.skip(`no Python ${minor} under pyenv`);
      const fn = await runToExit({ handler: 'observe.proces', env: { ASYA_PYTHONEXECUTABLE: python } });
      assert.equal(fn.code, 4);
      assert.match(
        String(fn.logs.find((l) => l.level === 'fatal')?.msg),
        /module 'observe' has no attribute 'proces': did you mean 'process'\?/,
      );
      const method = await runToExit({ handler: 'observe.Model.predikt', env: { ASYA_PYTHONEXECUTABLE: python } });
      assert.match(
        String(method.logs.find((l) => l.level === 'fatal')?.msg),
        /class observe\.Model has no method 'predikt': did you mean 'predict'\?/,
      );
    });
  }

  it('an unencodable result is named for what it is, and where it sits', async () => {
    const cases = [
      ['observe.when', /result\["when"\]: datetime/],
      ['observe.a_set', /result\[1\]\["tags"\]: set/],
      ['observe.some_bytes', /result: bytes/],
      ['observe.bad_key', /result: a key of type tuple/],
    ] as const;
    for (const [handler, where] of cases) {
      const rt = await startRuntime({ handler });
      try {
        const e = asError(await rt.send(env({}, { id: 'enc' })));
        assert.equal(e.error, 'processing_error');
        assert.match(e.details.message, /^the handler's result cannot be encoded as JSON: /);
        assert.match(e.details.message, where);
        assert.equal(e.details.traceback, '', 'the encoder alone refused it: no frames of the handler to show');
        const line = await rt.waitForLog((l) => l.level === 'error' && l.id === 'enc');
        assert.doesNotMatch(line.msg, /handler raised/);
        assert.match(line.msg, where);
      } finally {
        await rt.stop();
      }
    }
  });

  it("the handler's own code raising while its result is encoded: the message says so, the traceback shows where", async () => {
    for (const codec of ['json', 'auto']) {
      for (const [handler, type, message] of [
        [
          'observe.tolist_type_error',
          'TypeError',
          /^the handler's result cannot be encoded as JSON: scores are not ready$/,
        ],
        [
          'observe.tolist_zero',
          'ZeroDivisionError',
          /^the handler's result cannot be encoded as JSON: encoding it raised ZeroDivisionError: normalising by zero$/,
        ],
      ] as const) {
        const rt = await startRuntime({ handler, env: { ASYA_JSON_CODEC: codec } });
        try {
          const e = asError(await rt.send(env({})));
          assert.equal(e.error, 'processing_error');
          assert.equal(e.details.type, type, `${handler} (${codec})`);
          assert.match(e.details.message, message);
          assert.match(
            e.details.traceback,
            /observe\.py", line \d+, in tolist\n {4}raise self\.error/,
            `${handler} (${codec})`,
          );
        } finally {
          await rt.stop();
        }
      }
    }
  });

  it('`call` after a crash: nothing about restarts once it has shut down', async () => {
    const result = await runNode([CLI, 'call', '--verbose', '--handler', 'crash.exit_hard', '{}'], {
      env: { PYTHONPATH: HANDLERS },
    });
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.split('\n').filter(Boolean);
    const shutdown = lines.findIndex((l) => l.includes('"msg":"shutting down"'));
    assert.ok(shutdown > 0, result.stderr);
    const afterShutdown = lines.slice(shutdown).join('\n');
    assert.doesNotMatch(afterShutdown, /restart failed|backing off|restarting/);
  });

  it('on a terminal: one FATAL, and tracebacks as lines', async () => {
    const script =
      `import(${JSON.stringify(path.join(ROOT, 'dist', 'logger.js'))}).then(({ createLogger }) => {` +
      `createLogger('info', 'pretty').fatal({ exit_code: 4, traceback: 'Traceback (most recent call last):\\n  File "m.py", line 1, in <module>\\nValueError: x\\n' }, 'FATAL: cannot load handler "m.f"');})`;
    const { stderr } = await runNode(['--input-type=module', '-e', script], { env: { NO_COLOR: '1' } });
    assert.equal(stderr.match(/FATAL/g)?.length, 1, stderr);
    assert.match(stderr, /FATAL: cannot load handler "m.f"/);
    assert.match(
      stderr,
      /\n {4}Traceback \(most recent call last\):\n {6}File "m.py", line 1, in <module>\n {4}ValueError: x/,
    );
  });
});

describe('metrics: ASYA_METRICS_ADDR', () => {
  it('serves the Prometheus text format at /metrics, counting what happened', async () => {
    const rt = await startRuntime({
      handler: 'crash.maybe_crash',
      env: { ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_LOG_LEVEL: 'INFO' },
    });
    try {
      const port = Number((await rt.waitForLog((l) => l.msg === 'serving metrics')).port);
      assert.ok(port > 0);
      await rt.send(env({}));
      await rt.send(env({ crash: true }));
      await rt.send(env({})); // answered once Python is back
      await rt.sendRaw(Buffer.from('{"not": "an envelope"}'));
      const { status, body, type } = await scrape(port);
      assert.equal(status, 200);
      assert.match(type, /^text\/plain; version=0\.0\.4/);
      assert.equal(sample(body, 'asya_runtime_messages_total{outcome="ok"}'), 2, body);
      assert.equal(sample(body, 'asya_runtime_messages_total{outcome="worker_crashed"}'), 1);
      assert.equal(sample(body, 'asya_runtime_messages_total{outcome="msg_parsing_error"}'), 1);
      assert.equal(sample(body, 'asya_runtime_worker_restarts_total{reason="crash"}'), 1);
      assert.equal(sample(body, 'asya_runtime_handler_duration_seconds_count{outcome="ok"}'), 2);
      assert.equal(sample(body, 'asya_runtime_ready'), 1);
      assert.equal(sample(body, 'asya_runtime_queued_messages'), 0);
      assert.ok((sample(body, 'asya_runtime_python_resident_memory_bytes') ?? 0) > 1e6, body);
      assert.ok((sample(body, 'asya_runtime_handler_load_seconds') ?? -1) >= 0);
      assert.match(body, /# TYPE asya_runtime_handler_duration_seconds histogram/);
      assert.equal((await scrape(port, '/')).status, 404);
    } finally {
      await rt.stop();
    }
  });

  it('a bad address is a startup error naming the variable (exit 2)', async () => {
    for (const bad of ['9464', 'host:', ':99999', 'http://x:1']) {
      const result = await runToExit({ handler: 'observe.process', env: { ASYA_METRICS_ADDR: bad } });
      assert.equal(result.code, 2, result.text);
      assert.match(String(result.logs.find((l) => l.level === 'fatal')?.msg), /ASYA_METRICS_ADDR=/);
    }
  });
});
