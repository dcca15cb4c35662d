import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  CLI,
  env,
  type Finished,
  HANDLERS,
  jsonLines,
  onTerminal,
  ROOT,
  runNode,
  startRuntime,
  tempDir,
} from './helpers.js';

/** The CLI as a user would run it: compact JSON answers and JSON logs, handlers from test/handlers. */
function cli(
  args: string[],
  opts: { input?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<Finished> {
  return runNode([CLI, ...args], { ...opts, env: { PYTHONPATH: HANDLERS, ...opts.env } });
}

/** The FATAL log line's message (stderr is JSON lines when it is not a terminal). */
function fatal(stderr: string): string {
  const line = stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { level: string; msg: string })
    .find((l) => l.level === 'fatal');
  assert.ok(line, `no FATAL line in:\n${stderr}`);
  return line.msg;
}

describe('asya-runtime call', () => {
  it('runs a handler on a payload from the argument and prints the output envelopes', async () => {
    const r = await cli(['call', '--handler', 'basic.enrich', '--route', 'prep,model', '{"text": "hi"}']);
    assert.equal(r.code, 0, r.stderr);
    const [answer] = jsonLines(r.stdout) as Array<Array<{ route: unknown; payload: Record<string, unknown> }>>;
    assert.deepEqual(answer?.[0]?.route, { actors: ['prep', 'model'], current: 1 });
    assert.equal(answer?.[0]?.payload.text, 'hi');
    assert.ok(r.stderr.includes('handler loaded'), 'logs go to stderr');
  });

  it('sends repeated --payload, --file and JSON lines on stdin to one started handler', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'more.jsonl');
    fs.writeFileSync(file, '{}\n{}\n');
    const r = await cli([
      'call',
      '--handler',
      'classes.Counter.process',
      '--payload',
      '{}',
      '--payload',
      '{}',
      '--file',
      file,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      jsonLines(r.stdout).map((a) => (a as Array<{ payload: { count: number } }>)[0]?.payload.count),
      [1, 2, 3, 4],
      'class state carries over: one process served all four',
    );
    const piped = await cli(['call', '--handler', 'classes.Counter.process'], { input: '{"a": 1}\n\n{"b": 2}\n' });
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(jsonLines(piped.stdout).length, 2);
  });

  it('imports the module from the working directory; print() goes to stderr, never stdout', async () => {
    const dir = tempDir();
    fs.writeFileSync(
      path.join(dir, 'my_model.py'),
      'def predict(payload):\n    print("scoring", payload["x"])\n    return {"score": payload["x"] * 2}\n',
    );
    const r = await cli(['call', '--handler', 'my_model.predict', '{"x": 21}'], { cwd: dir, env: { PYTHONPATH: '' } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), [[{ route: { actors: ['actor'], current: 1 }, payload: { score: 42 } }]]);
    assert.match(r.stderr, /scoring 21/);
  });

  it('envelope mode with whole envelopes', async () => {
    const envelope = { id: 'e1', route: { actors: ['a', 'b'], current: 0 }, headers: { h: 1 }, payload: { v: 1 } };
    const r = await cli([
      'call',
      '--handler',
      'envelope_handlers.echo',
      '--mode',
      'envelope',
      '--envelope',
      JSON.stringify(envelope),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), [[envelope]]);
  });

  it('an error answer is printed and exits 1', async () => {
    const r = await cli(['call', '--handler', 'basic.raise_value', '{}']);
    assert.equal(r.code, 1);
    const [answer] = jsonLines(r.stdout) as Array<Array<{ error: string; details: { type: string } }>>;
    assert.equal(answer?.[0]?.error, 'processing_error');
    assert.equal(answer?.[0]?.details.type, 'ValueError');
  });

  it('usage and load errors say what is wrong, with their exit codes', async () => {
    const bad = await cli(['call', '--handler', 'basic.echo', '{not json']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /the argument is not valid JSON/);
    assert.match(bad.stderr, /See asya-runtime call --help/);
    const none = await cli(['call', '{}']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no handler: pass --handler/);
    const unknown = await cli(['call', '--handler', 'basic.echo', '--bogus', '{}']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--bogus/);
    const mode = await cli(['call', '--handler', 'basic.echo', '--mode', 'stream', '{}']);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /ASYA_HANDLER_MODE="stream"/);
    const missing = await cli(['call', '--handler', 'no_such_module.process', '{}']);
    assert.equal(missing.code, 4);
    assert.match(fatal(missing.stderr), /^FATAL: cannot load handler "no_such_module.process": no module found/);
    assert.equal(missing.stdout, '');
  });
});

describe('asya-runtime check', () => {
  it('reports a loadable handler with its interpreter, exit 0', async () => {
    const r = await cli(['check', '--handler', 'classes.Counter.process']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^ok: classes\.Counter\.process \(method, payload mode\) loaded in \d+ ms by Python 3\.\d+\.\d+ at \//,
    );
  });

  it('names the cause of a broken handler, exit 4; a missing interpreter, exit 3', async () => {
    const broken = await cli(['check', '--handler', 'broken_import.process']);
    assert.equal(broken.code, 4);
    assert.match(fatal(broken.stderr), /^FATAL: cannot load handler "broken_import.process"/);
    assert.equal(broken.stdout, '');
    const init = await cli(['check', '--handler', 'classes.NeedsArg.process']);
    assert.equal(init.code, 4);
    const python = await cli(['check', '--handler', 'basic.echo', '--python', '/nonexistent/python3']);
    assert.equal(python.code, 3);
    assert.match(fatal(python.stderr), /Python interpreter not found: ASYA_PYTHONEXECUTABLE="\/nonexistent\/python3"/);
  });
});

describe('asya-runtime call --python', () => {
  it('a missing interpreter is reported as the one --python named, exit 3, like check', async () => {
    const r = await cli(['call', '--handler', 'basic.echo', '--python', '/nonexistent/python3', '{}']);
    assert.equal(r.code, 3);
    assert.match(fatal(r.stderr), /Python interpreter not found: ASYA_PYTHONEXECUTABLE="\/nonexistent\/python3"/);
  });
});

describe('asya-runtime send', () => {
  it('talks to a running runtime like the sidecar; an unreachable socket is exit 5', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    try {
      const r = await cli(['send', '--socket', rt.socketPath, '--route', 'x,y', '{"n": 1}']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(jsonLines(r.stdout), [[{ route: { actors: ['x', 'y'], current: 1 }, payload: { n: 1 } }]]);
      const whole = await cli(['send', '--socket', rt.socketPath, '--envelope'], {
        input: JSON.stringify(env({ n: 2 })),
      });
      assert.equal(whole.code, 0, whole.stderr);
      assert.deepEqual((jsonLines(whole.stdout)[0] as Array<{ payload: unknown }>)[0]?.payload, { n: 2 });
      // Without --socket, the socket the runtime's own variables name: ASYA_SOCKET_PATH first.
      const byPath = await cli(['send', '{"n": 3}'], {
        env: { ASYA_SOCKET_PATH: rt.socketPath, ASYA_SOCKET_DIR: path.join(tempDir(), 'elsewhere') },
      });
      assert.equal(byPath.code, 0, byPath.stderr);
      assert.deepEqual((jsonLines(byPath.stdout)[0] as Array<{ payload: unknown }>)[0]?.payload, { n: 3 });
      const byDir = await cli(['send', '{"n": 4}'], {
        env: { ASYA_SOCKET_DIR: path.dirname(rt.socketPath), ASYA_SOCKET_NAME: path.basename(rt.socketPath) },
      });
      assert.equal(byDir.code, 0, byDir.stderr);
    } finally {
      await rt.stop();
    }
    const gone = await cli(['send', '--socket', path.join(tempDir(), 'none.sock'), '{}']);
    assert.equal(gone.code, 5);
    assert.match(gone.stderr, /no answer from .*none\.sock/);
  });
});

describe('help and version', () => {
  it('every command has --help; --version is the package version; unknown commands are usage errors', async () => {
    for (const command of ['call', 'check', 'send']) {
      const r = await cli([command, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^Usage: asya-runtime ${command}`));
    }
    const top = await cli(['--help']);
    assert.match(top.stdout, /asya-runtime call --handler SPEC/);
    const version = await cli(['--version']);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(version.stdout.trim(), pkg.version);
    const unknown = await cli(['serve-please']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "serve-please"/);
  });
});

describe('logs on a terminal', () => {
  it('are human-readable lines, not JSON', async () => {
    const { out: r } = await onTerminal(['check', '--handler', 'basic.echo', '--python', '/nonexistent/python3']);
    assert.match(r, /FATAL.*Python interpreter not found/);
    assert.doesNotMatch(r, /"level":/);
  });
});

describe('ASYA_LOG_FORMAT', () => {
  it("json on a terminal: every line is JSON, the handler's output too", async () => {
    const { out: r } = await onTerminal(['call', '--handler', 'basic.printer', '--payloads-only', '{}'], [], {
      ASYA_LOG_FORMAT: 'json',
    });
    const lines = r.split(/\r?\n/).filter((l) => l.startsWith('{"level"'));
    const logs = lines.map((l) => JSON.parse(l) as { msg: string; src?: string });
    assert.ok(
      logs.some((l) => l.msg === 'handler loaded'),
      r,
    );
    assert.ok(
      logs.some((l) => l.src === 'handler' && l.msg === 'hello from print'),
      r,
    );
  });

  it("pretty on a pipe: human-readable lines, the handler's output and a FATAL line too", async () => {
    const r = await cli(['call', '--handler', 'basic.printer', '--payloads-only', '{}'], {
      env: { ASYA_LOG_FORMAT: 'Pretty', NO_COLOR: '1' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /"level":/);
    assert.match(r.stderr, /INFO.*handler loaded/);
    assert.match(r.stderr, /INFO.*hello from print/);
    const fatal = await runNode([CLI], {
      env: {
        PYTHONPATH: HANDLERS,
        ASYA_HANDLER: 'basic.echo',
        ASYA_LOG_FORMAT: 'pretty',
        ASYA_WORKERS: 'many',
        NO_COLOR: '1',
      },
    });
    assert.equal(fatal.code, 2);
    assert.match(fatal.stderr, /FATAL.*ASYA_WORKERS="many" is not valid/);
    assert.doesNotMatch(fatal.stderr, /"level":/);
  });

  it('any other value stops the start naming the variable, exit 2', async () => {
    const r = await runNode([CLI], {
      env: { PYTHONPATH: HANDLERS, ASYA_HANDLER: 'basic.echo', ASYA_LOG_FORMAT: 'xml' },
    });
    assert.equal(r.code, 2);
    assert.equal(fatal(r.stderr), 'FATAL: ASYA_LOG_FORMAT="xml" is not valid: expected json, pretty (any case)');
    const call = await cli(['call', '--handler', 'basic.echo', '{}'], { env: { ASYA_LOG_FORMAT: 'xml' } });
    assert.equal(call.code, 2);
    assert.match(call.stderr, /ASYA_LOG_FORMAT="xml" is not valid: expected json, pretty \(any case\)/);
  });
});

describe('one reading of seconds', () => {
  it('--timeout is read as ASYA_HANDLER_TIMEOUT is: 1e3 is refused naming the flag, 2.5 is accepted', async () => {
    const bad = await runNode([CLI, 'call', '--handler', 'basic.echo', '--timeout', '1e3', '{}'], {
      env: { PYTHONPATH: HANDLERS },
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--timeout "1e3" is not valid: expected a positive number of seconds/);
    assert.doesNotMatch(bad.stderr, /ASYA_HANDLER_TIMEOUT/);
    const ok = await runNode([CLI, 'call', '--handler', 'basic.echo', '--timeout', '2.5', '{"x": 1}'], {
      env: { PYTHONPATH: HANDLERS },
    });
    assert.equal(ok.code, 0, ok.stderr);
  });
});
