/**
 * breakpoint() in a handler (docs/handler-guide.md, "Debugging"): under `asya-runtime call` on a terminal
 * pdb opens on it, and the time limit waits while it is open; anywhere else the message fails saying a
 * terminal is needed, never BdbQuit and never a hang; PYTHONBREAKPOINT=0 makes it do nothing. The
 * terminal is a real pseudo-terminal (util-linux `script`), driven by what pdb prints.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { asError, CLI, env, HANDLERS, jsonLines, onTerminal, pyenvPython, runNode, startRuntime } from './helpers.js';

const PYTHONS: Array<[string, string | null]> = [
  ['default', 'python3'],
  ['3.7', pyenvPython('3.7')],
  ['3.13', pyenvPython('3.13')],
];

const NEEDS_TERMINAL = /^breakpoint\(\) needs a terminal: run `asya-runtime call` on one/;

for (const [version, python] of PYTHONS) {
  describe(`breakpoint() (Python ${version})`, { skip: python === null && 'not under pyenv' }, () => {
    const pythonArgs = ['--python', python ?? 'python3'];

    it('without a terminal, the message fails saying one is needed; the process serves the next', async () => {
      // The deployed runtime
      const rt = await startRuntime({ handler: 'debug.stop', env: { ASYA_PYTHONEXECUTABLE: python ?? undefined } });
      try {
        for (const id of ['d-1', 'd-2']) {
          const e = asError(await rt.send(env({ x: 1 }, { id })));
          assert.equal(e.error, 'processing_error');
          assert.equal(e.details.type, 'DebuggerUnavailable');
          assert.match(e.details.message, NEEDS_TERMINAL);
          assert.match(e.details.traceback, /debug\.py", line 6, in stop\n {4}breakpoint\(\)\n/);
        }
      } finally {
        await rt.stop();
      }
      // `call` with its stdin not a terminal
      const piped = await runNode([CLI, 'call', ...pythonArgs, '--handler', 'debug.stop', '{"x": 1}'], {
        env: { PYTHONPATH: HANDLERS },
      });
      assert.equal(piped.code, 1, piped.stderr);
      const [answer] = jsonLines(piped.stdout) as Array<Array<{ details: { type: string; message: string } }>>;
      assert.equal(answer?.[0]?.details.type, 'DebuggerUnavailable');
      assert.match(String(answer?.[0]?.details.message), NEEDS_TERMINAL);
    });

    it('PYTHONBREAKPOINT=0: breakpoint() does nothing', async () => {
      const r = await runNode([CLI, 'call', ...pythonArgs, '--handler', 'debug.stop', '--payloads-only', '{"x": 1}'], {
        env: { PYTHONPATH: HANDLERS, PYTHONBREAKPOINT: '0' },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(jsonLines(r.stdout), [{ answer: 2, changed: false }]);
    });

    it('on a terminal: pdb opens there, on the live frame; the time limit (1 s) waits while it is open', async () => {
      const { out, code } = await onTerminal(
        ['call', ...pythonArgs, '--handler', 'debug.stop', '--timeout', '1', '--payloads-only', '{"x": 41}'],
        [
          { after: /\(Pdb\) /, type: 'p answer', wait: [1500, 'the 1 s time limit would have fired by now'] },
          { after: /^42\r?$/m, type: '!payload["changed"] = True' },
          { after: /\(Pdb\) /, type: 'c' },
        ],
        { ASYA_LOG_FORMAT: 'json' },
      );
      assert.equal(code, 0, out);
      assert.match(out, /"answer": 42,\s+"changed": true/);
      assert.doesNotMatch(out, /"outcome":"handler_timeout"|interrupting it/);
      assert.match(out, /"msg":"breakpoint\(\): the debugger is open on the terminal; the time limit waits"/);
      assert.match(out, /"msg":"the debugger closed; the time limit runs again"/);
    });

    it('q on the terminal fails that message only; the next is served', async () => {
      const { out, code } = await onTerminal(
        [
          'call',
          ...pythonArgs,
          '--handler',
          'debug.stop',
          '--payloads-only',
          '--payload',
          '{"x": 1}',
          '--payload',
          '{"x": 2}',
        ],
        [
          { after: /\(Pdb\) /, type: 'q' },
          { after: /\(Pdb\) /, type: 'c' },
        ],
      );
      assert.equal(code, 1, out);
      assert.match(out, /"message": "quit in the debugger \(q\): the call ended there",\s+"type": "BdbQuit"/);
      assert.match(out, /"answer": 3,\s+"changed": false/);
    });
  });
}
