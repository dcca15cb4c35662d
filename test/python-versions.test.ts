import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { env, pyenvPython, runToExit, startRuntime, TEST_VENV_PYTHON } from './helpers.js';

async function roundTrip(python: string, handler: string, vars: Record<string, string> = {}): Promise<unknown[]> {
  const rt = await startRuntime({ handler, env: { ASYA_PYTHONEXECUTABLE: python, ...vars } });
  try {
    const loaded = await rt.waitForLog((l) => l.msg === 'handler loaded');
    const out = [];
    for (let i = 0; i < 3; i++) out.push(((await rt.send(env({ i }))) as Array<{ payload: unknown }>)[0]?.payload);
    out.push(loaded.python);
    return out;
  } finally {
    await rt.stop();
  }
}

describe('Python versions via ASYA_PYTHONEXECUTABLE', () => {
  for (const minor of ['3.7', '3.13']) {
    const python = pyenvPython(minor);
    it(`Python ${minor}: function and class handlers, errors, envelope mode`, {
      skip: python ? false : `no Python ${minor} under pyenv`,
    }, async () => {
      const p = python as string;
      const fn = await roundTrip(p, 'seed_examples.preprocess');
      assert.deepEqual(fn[0], { i: 0, cleaned_text: '', word_count: 0 });
      assert.match(String(fn[3]), new RegExp(`^${minor.replace('.', '\\.')}\\.`));
      const cls = await roundTrip(p, 'classes.Counter.process');
      assert.deepEqual(cls.slice(0, 3), [{ count: 1 }, { count: 2 }, { count: 3 }]);
      const rt = await startRuntime({ handler: 'basic.raise_value', env: { ASYA_PYTHONEXECUTABLE: p } });
      const answer = (await rt.send(env({}))) as Array<{ error: string; details: { traceback: string } }>;
      assert.equal(answer[0]?.error, 'processing_error');
      assert.match(answer[0]?.details.traceback ?? '', /ValueError: Invalid input/);
      await rt.stop();
      const envMode = await roundTrip(p, 'seed_examples.envelope_mode', { ASYA_HANDLER_MODE: 'envelope' });
      assert.deepEqual(envMode[0], { i: 0, processed: true });
      const printer = await roundTrip(p, 'basic.printer');
      assert.deepEqual(printer[0], { printed: true });
    });
  }

  const python2 = pyenvPython('2.7')?.replace(/python3$/, 'python');
  it('Python 2 is refused with the same clear FATAL line, naming the interpreter', {
    skip: python2 && fs.existsSync(python2) ? false : 'no Python 2.7 under pyenv',
  }, async () => {
    const result = await runToExit({ handler: 'basic.echo', env: { ASYA_PYTHONEXECUTABLE: python2 as string } });
    assert.equal(result.code, 4);
    const fatal = result.logs.find((l) => l.level === 'fatal')?.msg ?? '';
    assert.match(fatal, /is too old: the runtime needs 3\.7 or newer/);
    assert.ok(fatal.includes(python2 as string), fatal);
  });

  it('Python 3.6 is refused with a clear FATAL line', {
    skip: pyenvPython('3.6') ? false : 'no Python 3.6 under pyenv',
  }, async () => {
    const result = await runToExit({
      handler: 'basic.echo',
      env: { ASYA_PYTHONEXECUTABLE: pyenvPython('3.6') as string },
    });
    assert.equal(result.code, 4);
    const fatal = result.logs.find((l) => l.level === 'fatal')?.msg ?? '';
    assert.match(fatal, /Python 3\.6\.\d+ is too old: the runtime needs 3\.7 or newer \[Python 3\.6\.\d+ at \//);
  });
});

describe('numpy results (virtualenv with numpy, handler dependency installed only there)', () => {
  async function payload(handler: string): Promise<unknown> {
    const rt = await startRuntime({ handler, env: { ASYA_PYTHONEXECUTABLE: TEST_VENV_PYTHON } });
    try {
      return ((await rt.send(env({}))) as Array<{ payload: unknown }>)[0]?.payload;
    } finally {
      await rt.stop();
    }
  }

  it('numpy scalars become JSON numbers and booleans', async () => {
    assert.deepEqual(await payload('numpy_handlers.scalars'), { f32: 1.5, i64: 7, b: true, f64: 0.25 });
  });

  it('numpy arrays become nested lists', async () => {
    assert.deepEqual(await payload('numpy_handlers.array'), {
      embedding: [
        [0, 0.5, 1],
        [1.5, 2, 2.5],
      ],
      n: 6,
    });
    assert.deepEqual(await payload('numpy_handlers.top_array'), [1, 2, 3]);
  });

  for (const codec of ['json', 'orjson']) {
    it(`numpy integer and bool keys are written as int and bool keys are (ASYA_JSON_CODEC=${codec})`, async () => {
      const rt = await startRuntime({
        handler: 'numpy_handlers.keyed',
        env: { ASYA_PYTHONEXECUTABLE: TEST_VENV_PYTHON, ASYA_JSON_CODEC: codec },
      });
      try {
        const answer = (await rt.send(env({ codec }))) as Array<{ payload: unknown }>;
        assert.deepEqual(answer[0]?.payload, {
          by_class: { '3': 0.25, '1': 0.75 },
          flags: { true: [{ '7': 1 }] },
          codec,
        });
      } finally {
        await rt.stop();
      }
    });
  }

  it('NaN and Infinity inside arrays become null', async () => {
    assert.deepEqual(await payload('numpy_handlers.nan_array'), { v: [1, null, null] });
  });

  it('the same handler fails to load under a Python without numpy, naming the missing module', async () => {
    const result = await runToExit({
      handler: 'numpy_handlers.scalars',
      env: { ASYA_PYTHONEXECUTABLE: pyenvPython('3.7') ?? 'python3' },
    });
    assert.equal(result.code, 4);
    assert.match(result.logs.find((l) => l.level === 'fatal')?.msg ?? '', /No module named 'numpy'/);
  });
});
