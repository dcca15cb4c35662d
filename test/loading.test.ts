import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { env, type LogLine, runToExit, startRuntime, tempDir } from './helpers.js';

function fatal(logs: LogLine[]): string {
  const line = logs.find((l) => l.level === 'fatal');
  assert.ok(line, `no fatal log line in:\n${JSON.stringify(logs, null, 1)}`);
  assert.match(line.msg, /^FATAL: /);
  return line.msg;
}

async function expectFatal(
  opts: Parameters<typeof runToExit>[0],
  exitCode: number,
  pattern: RegExp,
): Promise<LogLine[]> {
  const result = await runToExit(opts);
  assert.equal(result.code, exitCode, result.text);
  assert.match(fatal(result.logs), pattern);
  assert.equal(result.readyFileSeen, false, 'the ready file must never appear');
  return result.logs;
}

describe('handler load failures: FATAL line naming the cause, non-zero exit, no ready file', () => {
  it('handler not set', async () => {
    await expectFatal({ handler: undefined }, 2, /ASYA_HANDLER is not set/);
  });

  it('malformed handler strings', async () => {
    for (const bad of ['../etc/passwd', 'mod', 'my-mod.process', 'a b.c', 'mod.__import__("os")', '.mod.f', 'mod.f.']) {
      await expectFatal(
        { handler: bad },
        2,
        new RegExp(`ASYA_HANDLER=${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid`),
      );
    }
  });

  it('module not found', async () => {
    await expectFatal(
      { handler: 'no_such_module.process' },
      4,
      /no module found for handler 'no_such_module.process': tried 'no_such_module' on sys.path/,
    );
  });

  it('module raises at import, with the traceback', async () => {
    const logs = await expectFatal(
      { handler: 'broken_import.process' },
      4,
      /importing module 'broken_import' raised RuntimeError: this module fails at import time/,
    );
    assert.match(String(logs.find((l) => l.level === 'fatal')?.traceback), /broken_import\.py", line 1/);
  });

  it('a missing dependency of the module is named, not hidden', async () => {
    await expectFatal(
      { handler: 'missing_dep.process' },
      4,
      /importing module 'missing_dep' raised ModuleNotFoundError: No module named 'nonexistent_dependency_for_asya_tests'/,
    );
  });

  it('syntax error in the module', async () => {
    await expectFatal({ handler: 'syntax_error.process' }, 4, /importing module 'syntax_error' raised SyntaxError/);
  });

  it('attribute missing, not callable, class named without a method', async () => {
    await expectFatal({ handler: 'basic.nope' }, 4, /module 'basic' has no attribute 'nope'/);
    await expectFatal({ handler: 'not_callable.process' }, 4, /not_callable.process is not callable \(it is a int\)/);
    await expectFatal(
      { handler: 'classes.Counter' },
      4,
      /classes.Counter is a class: name one of its methods, e.g. classes.Counter.process/,
    );
    await expectFatal({ handler: 'classes.not_a_class.process' }, 4, /classes.not_a_class is not a class/);
    await expectFatal({ handler: 'classes.Counter.missing' }, 4, /class classes.Counter has no method 'missing'/);
    await expectFatal(
      { handler: 'classes.AttrNotCallable.process' },
      4,
      /classes.AttrNotCallable.process is not callable/,
    );
    await expectFatal(
      { handler: 'classes.Counter.process.extra.deep' },
      4,
      /expected 'function' or 'Class.method', got 'Counter.process.extra.deep'/,
    );
  });

  it('__init__ parameters without defaults, positional and keyword-only', async () => {
    await expectFatal(
      { handler: 'classes.NeedsArg.process' },
      4,
      /classes.NeedsArg.__init__\(\) parameter 'model_path' has no default value/,
    );
    await expectFatal({ handler: 'classes.KeywordOnly.process' }, 4, /parameter 'threshold' has no default value/);
  });

  it('__init__ raises', async () => {
    const logs = await expectFatal(
      { handler: 'classes.InitRaises.process' },
      4,
      /classes.InitRaises\(\) raised RuntimeError: model file \/models\/x.bin not found/,
    );
    assert.match(String(logs.find((l) => l.level === 'fatal')?.traceback), /in __init__/);
  });

  it('invalid ASYA_HANDLER_MODE', async () => {
    await expectFatal(
      { handler: 'basic.echo', env: { ASYA_HANDLER_MODE: 'stream' } },
      2,
      /ASYA_HANDLER_MODE="stream" is not valid: expected payload, envelope/,
    );
  });

  it('interpreter not found, by name and by path', async () => {
    await expectFatal(
      { handler: 'basic.echo', env: { ASYA_PYTHONEXECUTABLE: 'python-does-not-exist' } },
      3,
      /Python interpreter not found: ASYA_PYTHONEXECUTABLE="python-does-not-exist" is not on PATH \(/,
    );
    await expectFatal(
      { handler: 'basic.echo', env: { ASYA_PYTHONEXECUTABLE: '/opt/nowhere/python' } },
      3,
      /ASYA_PYTHONEXECUTABLE="\/opt\/nowhere\/python": \/opt\/nowhere\/python is not an executable file/,
    );
    await expectFatal(
      { handler: 'basic.echo', env: { PATH: '/nonexistent-bin' } },
      3,
      /the default "python3" is not on PATH \(\/nonexistent-bin\)/,
    );
  });

  it('an interpreter that is not Python 3.7+', async () => {
    const dir = tempDir();
    const fake = path.join(dir, 'python3');
    fs.writeFileSync(fake, '#!/bin/sh\necho "this is not python" >&2\nexit 9\n', { mode: 0o755 });
    await expectFatal(
      { handler: 'basic.echo', env: { ASYA_PYTHONEXECUTABLE: fake } },
      4,
      /the Python process \(\/.*\/python3\) ended before loading handler .* \(Python process exited with code 9\); its last output:\nthis is not python/,
    );
    fs.rmSync(dir, { recursive: true });
  });

  it('bad values of other variables name the variable and the value', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ ASYA_SOCKET_CHMOD: 'rw-rw-rw-' }, /ASYA_SOCKET_CHMOD="rw-rw-rw-" is not valid/],
      [{ ASYA_SOCKET_CHMOD: '0o999' }, /ASYA_SOCKET_CHMOD="0o999"/],
      [
        { ASYA_SOCKET_CHMOD: '0o7777' },
        /ASYA_SOCKET_CHMOD="0o7777" is not valid: expected an octal mode of permission bits/,
      ],
      [{ ASYA_SOCKET_CHMOD: '4666' }, /ASYA_SOCKET_CHMOD="4666"/],
      [{ ASYA_MAX_MESSAGE_SIZE: '10MB' }, /ASYA_MAX_MESSAGE_SIZE="10MB" is not valid: expected an integer/],
      [{ ASYA_CHUNK_SIZE: '-1' }, /ASYA_CHUNK_SIZE="-1"/],
      [{ ASYA_ENABLE_VALIDATION: 'maybe' }, /ASYA_ENABLE_VALIDATION="maybe"/],
      [{ ASYA_INCLUDE_METADATA: 'sure' }, /ASYA_INCLUDE_METADATA="sure"/],
      [{ ASYA_LOG_LEVEL: 'LOUD' }, /ASYA_LOG_LEVEL="LOUD"/],
      [
        { ASYA_HANDLER_TIMEOUT: 'soon' },
        /ASYA_HANDLER_TIMEOUT="soon" is not valid: expected a positive number of seconds/,
      ],
      [{ ASYA_SOCKET_NAME: 'a/b.sock' }, /ASYA_SOCKET_NAME="a\/b.sock"/],
    ];
    for (const [vars, pattern] of cases) await expectFatal({ handler: 'basic.echo', env: vars }, 2, pattern);
  });
});

describe('handler loading that works', () => {
  async function serves(
    handler: string,
    vars: Record<string, string> = {},
    payload: unknown = {},
  ): Promise<Record<string, unknown>> {
    const rt = await startRuntime({ handler, env: vars });
    try {
      return ((await rt.send(env(payload))) as Array<{ payload: Record<string, unknown> }>)[0]!.payload;
    } finally {
      await rt.stop();
    }
  }

  it('a class without its own __init__, and one with only *args/**kwargs', async () => {
    assert.deepEqual(await serves('classes.NoInit.process'), { no_init: true });
    assert.deepEqual(await serves('classes.VarArgs.process'), { args: [] });
  });

  it('functions and classes deep in packages', async () => {
    assert.deepEqual(await serves('pkg.sub.mod.process'), { from: 'pkg.sub.mod' });
    assert.deepEqual(await serves('pkg.sub.mod.Model.predict'), { class_in: 'pkg.sub.mod' });
  });

  it('class state persists across messages', async () => {
    const rt = await startRuntime({ handler: 'classes.Counter.process' });
    try {
      for (let i = 1; i <= 3; i++)
        assert.deepEqual(((await rt.send(env({}))) as Array<{ payload: unknown }>)[0]?.payload, { count: i });
    } finally {
      await rt.stop();
    }
  });

  it('legacy ASYA_PROCESS_MODULE, both forms; ASYA_HANDLER wins when both are set', async () => {
    assert.deepEqual(await serves('', { ASYA_HANDLER: '', ASYA_PROCESS_MODULE: 'pkg.sub.mod:process' }), {
      from: 'pkg.sub.mod',
    });
    assert.deepEqual(await serves('', { ASYA_HANDLER: '', ASYA_PROCESS_MODULE: 'pkg.sub.mod' }), {
      from: 'pkg.sub.mod',
    });
    assert.deepEqual(await serves('classes.NoInit.process', { ASYA_PROCESS_MODULE: 'pkg.sub.mod:process' }), {
      no_init: true,
    });
    await expectFatal(
      { handler: undefined, env: { ASYA_PROCESS_MODULE: 'bad-module:f' } },
      2,
      /ASYA_PROCESS_MODULE="bad-module:f" is not valid/,
    );
  });

  it("the handler sees the runtime's environment, plus malloc tunables unless the operator set their own", async () => {
    const names = { names: ['GLIBC_TUNABLES', 'MY_SETTING'] };
    const tuned = await serves('basic.environ', { MY_SETTING: 'kept' }, names);
    assert.equal(tuned.MY_SETTING, 'kept');
    assert.match(String(tuned.GLIBC_TUNABLES), /glibc\.malloc\.mmap_threshold=\d+/);
    assert.deepEqual(await serves('basic.environ', { GLIBC_TUNABLES: '' }, names), {
      GLIBC_TUNABLES: '',
      MY_SETTING: null,
    });
  });

  it('mode and booleans are case-insensitive', async () => {
    const rt = await startRuntime({
      handler: 'envelope_handlers.echo',
      env: { ASYA_HANDLER_MODE: 'ENVELOPE', ASYA_ENABLE_VALIDATION: 'TRUE' },
    });
    try {
      const e = env({ a: 1 });
      assert.deepEqual(await rt.send(e), [{ ...e, route: { actors: ['a', 'b', 'c'], current: 0 } }]);
    } finally {
      await rt.stop();
    }
  });
});

describe('ASYA_INCLUDE_METADATA', () => {
  it('hands a payload-mode handler the envelope; its result is still the payload, its route changes ignored', async () => {
    const rt = await startRuntime({ handler: 'metadata.show', env: { ASYA_INCLUDE_METADATA: 'yes' } });
    try {
      const input = {
        id: 'm1',
        parent_id: 'p1',
        route: { actors: ['a', 'b'], current: 0 },
        headers: { h: 1 },
        payload: { v: 2 },
      };
      const answer = await rt.send(input);
      assert.deepEqual(answer, [
        {
          route: { actors: ['a', 'b'], current: 1 },
          headers: { h: 1 },
          payload: { saw: { ...input, route: { actors: ['a', 'b', 'ignored-mutation'], current: 0 } } },
        },
      ]);
    } finally {
      await rt.stop();
    }
  });
});
