import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
  processesWithEnv,
  ROOT,
  runNode,
  startRuntime,
  tempDir,
  until,
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
    assert.match(r.stderr, /^REPORT {2}duration: /m, 'REPORT goes to stderr');
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

describe('asya-runtime call in a terminal session', () => {
  const records = (stderr: string) =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string; src?: string; report?: boolean });

  it("shows the handler's output, the answers and REPORT; the runtime's own lines only with --verbose", async () => {
    const quiet = await cli(['call', '--handler', 'basic.printer', '{}']);
    assert.equal(quiet.code, 0, quiet.stderr);
    const lines = records(quiet.stderr);
    assert.ok(lines.length >= 4, quiet.stderr);
    assert.deepEqual(
      lines.filter((l) => l.src !== 'handler'),
      [],
      'at INFO, only what the handler wrote',
    );
    assert.match(quiet.stderr, /^REPORT {2}duration: /m);
    const verbose = await cli(['call', '--verbose', '--handler', 'basic.printer', '{}']);
    const own = records(verbose.stderr)
      .filter((l) => l.src !== 'handler')
      .map((l) => l.msg);
    for (const msg of ['starting Asya runtime', 'listening', 'handler loaded', 'ready: accepting messages', 'stopped'])
      assert.ok(own.includes(msg), `--verbose shows ${msg}: ${own.join(' | ')}`);
    const debug = await cli(['call', '--log-level', 'DEBUG', '--handler', 'basic.echo', '{}']);
    assert.ok(
      records(debug.stderr).some((l) => l.msg === 'handler loaded'),
      'DEBUG shows everything',
    );
    const failing = await cli(['call', '--handler', 'basic.raise_value', '{}']);
    assert.ok(
      records(failing.stderr).some((l) => l.level === 'error' || l.level === 'warn'),
      `warnings and errors always show: ${failing.stderr}`,
    );
  });

  it('--report json: one JSON object per answer; --report none: no REPORT', async () => {
    const r = await cli(['call', '--report', 'json', '--handler', 'classes.Counter.process', '{}', '--payload', '{}']);
    assert.equal(r.code, 0, r.stderr);
    const reports = r.stderr
      .split('\n')
      .filter((l) => l.includes('"report":true'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(reports.length, 2, r.stderr);
    assert.equal(typeof reports[0]?.init_duration_ms, 'number');
    assert.equal(reports[1]?.init_duration_ms, null, 'the load time on the first answer only');
    for (const rep of reports) {
      assert.ok((rep.duration_ms as number) > 0);
      assert.ok((rep.peak_rss_bytes as number) > 2 ** 20);
      assert.equal(typeof rep.python_pid, 'number');
    }
    const none = await cli(['call', '--report', 'none', '--handler', 'basic.echo', '{}']);
    assert.doesNotMatch(none.stderr, /REPORT|"report"/);
    const bad = await cli(['call', '--report', 'xml', '--handler', 'basic.echo', '{}']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--report "xml" is not valid: expected text, json or none/);
  });

  it("with ASYA_PRELOAD the REPORT's load time is the template's load, not the worker's fork", async () => {
    const dir = tempDir();
    fs.writeFileSync(
      path.join(dir, 'slow_import.py'),
      'import time\ntime.sleep(0.4)\n\ndef process(payload):\n    return payload\n',
    );
    const r = await runNode([CLI, 'call', '--report', 'json', '--handler', 'slow_import.process', '{}'], {
      cwd: dir,
      env: { PYTHONPATH: '', ASYA_PRELOAD: 'true' },
    });
    assert.equal(r.code, 0, r.stderr);
    const report = r.stderr
      .split('\n')
      .filter((l) => l.includes('"report":true'))
      .map((l) => JSON.parse(l) as { init_duration_ms: number })[0];
    assert.ok(
      (report?.init_duration_ms ?? 0) >= 400,
      `init duration ${report?.init_duration_ms} ms: the import sleeps 400`,
    );
    fs.rmSync(dir, { recursive: true });
  });

  it('--env-file sets variables under the flags; --args gives the constructor its arguments', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    fs.writeFileSync(
      file,
      '# the team\'s .env\nASYA_HANDLER=basic.environ\nexport GREETING="hello\\nworld"\nMODE=from-file # note\n',
    );
    const r = await cli(['call', '--env-file', file, '--payloads-only', '{"names": ["GREETING", "MODE"]}'], {
      env: { MODE: 'from-environment' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), [{ GREETING: 'hello\nworld', MODE: 'from-file' }]);
    const flagWins = await cli(['call', '--env-file', file, '--handler', 'basic.echo', '--payloads-only', '{"x": 1}']);
    assert.deepEqual(jsonLines(flagWins.stdout), [{ x: 1 }], '--handler wins over the file');
    fs.writeFileSync(path.join(dir, 'bad.env'), 'A=1\nnot a variable\n');
    const bad = await cli(['call', '--env-file', path.join(dir, 'bad.env'), '--handler', 'basic.echo', '{}']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--env-file .*bad\.env, line 2: expected KEY=VALUE or KEY, got "not a variable"/);
    // Node.js looks for a file named by --env-file anywhere on the command line (nodejs/node#54232) and
    // ends the process before the CLI runs: exit 9, naming the file, as the help says.
    const missing = await cli(['check', '--env-file', path.join(dir, 'nope.env'), '--handler', 'basic.echo']);
    assert.equal(missing.code, 9);
    assert.match(missing.stderr, /nope\.env: not found/);

    const args = await cli(['call', '--handler', 'classes.NeedsArg.process', '--args', '{"model_path": "/m"}', '{}']);
    assert.equal(args.code, 0, args.stderr);
    const checked = await cli(['check', '--handler', 'classes.NeedsArg.process', '--args', '{"model_path": "/m"}']);
    assert.equal(checked.code, 0, checked.stderr);
    const badArgs = await cli(['check', '--handler', 'classes.NeedsArg.process', '--args', '[1]']);
    assert.equal(badArgs.code, 2);
    assert.match(badArgs.stderr, /ASYA_HANDLER_ARGS="\[1\]" is not valid/);
    fs.rmSync(dir, { recursive: true });
  });

  it('Ctrl-C while the handler runs: exit 130 at once, nothing left running', async () => {
    const marker = `ctrl-c-${process.pid}-${Date.now()}`;
    const child = spawn(process.execPath, [CLI, 'call', '--handler', 'basic.sleep', '{"s": 60}'], {
      env: { ...process.env, PYTHONPATH: HANDLERS, CTRL_C_TEST: marker },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await until(
      () => `the handler to start:\n${stderr}`,
      () => stderr.includes('sleeping 60 s'),
      20_000,
      20,
    );
    const pressed = Date.now();
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.ok(Date.now() - pressed < 5000, `exited ${Date.now() - pressed} ms after Ctrl-C`);
    await until(
      () => `no process of the call left: ${JSON.stringify(processesWithEnv('CTRL_C_TEST', marker))}`,
      () => processesWithEnv('CTRL_C_TEST', marker).length === 0,
      10_000,
    );
  });
});

describe('asya-runtime check', () => {
  it('loads as call does (the current directory, then PYTHONPATH) and notes when only the current directory found it', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'plain.py'), 'def process(payload):\n    return {"seen": payload}\n');
    const run = (args: string[], pythonPath: string) =>
      runNode([CLI, ...args], { cwd: dir, env: { PYTHONPATH: pythonPath } });
    const called = await run(['call', '--handler', 'plain.process', '{"a": 1}'], '');
    assert.equal(called.code, 0, called.stderr);
    const checked = await run(['check', '--handler', 'plain.process'], '');
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /^ok: plain\.process \(function, payload mode\)/);
    assert.ok(
      checked.stderr.includes(
        `note: plain.py was found in the current directory, which the deployed runtime does not search: set PYTHONPATH=${dir}`,
      ),
      checked.stderr,
    );
    const onPath = await run(['check', '--handler', 'plain.process'], dir);
    assert.equal(onPath.code, 0, onPath.stderr);
    assert.doesNotMatch(onPath.stderr, /note:/, 'on PYTHONPATH, the pod finds it too');
    // an ancestor of the current directory on PYTHONPATH does not import `plain` (it would be pkg.plain)
    const ancestor = await run(['check', '--handler', 'plain.process'], path.dirname(dir));
    assert.match(ancestor.stderr, /note: plain\.py was found in the current directory/);
    // another plain.py on PYTHONPATH is what the pod would import
    const lib = tempDir();
    fs.writeFileSync(path.join(lib, 'plain.py'), 'def process(payload:\n');
    const shadowed = await run(['check', '--handler', 'plain.process'], lib);
    assert.equal(shadowed.code, 0, shadowed.stderr);
    assert.ok(
      shadowed.stderr.includes(`with this PYTHONPATH it would import ${path.join(lib, 'plain.py')} instead`),
      shadowed.stderr,
    );
    // the current directory on PYTHONPATH, but after the other: the pod still imports the other
    const after = await run(['check', '--handler', 'plain.process'], [lib, dir].join(path.delimiter));
    assert.ok(
      after.stderr.includes(`with this PYTHONPATH it would import ${path.join(lib, 'plain.py')} instead`),
      after.stderr,
    );
    const before = await run(['check', '--handler', 'plain.process'], [dir, lib].join(path.delimiter));
    assert.doesNotMatch(before.stderr, /note:/, 'the current directory first: the pod imports the same file');
    fs.rmSync(lib, { recursive: true });
    // and both fail alike where neither finds it
    const elsewhere = tempDir();
    const a = await runNode([CLI, 'call', '--handler', 'plain.process', '{}'], {
      cwd: elsewhere,
      env: { PYTHONPATH: '' },
    });
    const b = await runNode([CLI, 'check', '--handler', 'plain.process'], { cwd: elsewhere, env: { PYTHONPATH: '' } });
    assert.deepEqual([a.code, b.code], [4, 4]);
    assert.match(fatal(a.stderr), /no module found/);
    assert.match(fatal(b.stderr), /no module found/);
    fs.rmSync(dir, { recursive: true });
    fs.rmSync(elsewhere, { recursive: true });
  });

  it("a module of the user's named like one the codec imports (platform.py) does not shadow it", async () => {
    const dir = tempDir();
    // orjson 3.8 reads the stdlib's platform module as it loads: an empty one here crashed it (SIGSEGV)
    fs.writeFileSync(path.join(dir, 'platform.py'), '');
    fs.writeFileSync(path.join(dir, 'h.py'), 'def process(payload):\n    return payload\n');
    const r = await runNode([CLI, 'call', '--handler', 'h.process', '--payloads-only', '{"a": 1}'], {
      cwd: dir,
      env: { PYTHONPATH: '' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), [{ a: 1 }]);
    fs.rmSync(dir, { recursive: true });
  });

  it('every load failure names the interpreter, its version and path, in the FATAL line and its fields', async () => {
    const cases = [
      ['check', '--handler', 'no_such_module.process'],
      ['check', '--handler', 'broken_import.process'],
      ['check', '--handler', 'classes.NeedsArg.process'],
      ['call', '--handler', 'no_such_module.process', '{}'],
    ];
    for (const args of cases) {
      const r = await cli(args);
      assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
      const line = r.stderr
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: string; msg: string; python?: string; python_version?: string })
        .find((l) => l.level === 'fatal');
      assert.ok(line?.python && line.python_version, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(fs.existsSync(line.python), line.python);
      assert.ok(
        line.msg.endsWith(`[Python ${line.python_version} at ${line.python}]`),
        `${args.join(' ')}: ${line.msg}`,
      );
    }
  });

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
    const { out: r } = await onTerminal(
      ['call', '--verbose', '--handler', 'basic.printer', '--payloads-only', '{}'],
      [],
      {
        ASYA_LOG_FORMAT: 'json',
      },
    );
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
    const r = await cli(['call', '--verbose', '--handler', 'basic.printer', '--payloads-only', '{}'], {
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
