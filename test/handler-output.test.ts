/**
 * What a handler writes, as log records (docs/observing.md, "What your handler writes"): a traceback
 * (print_exc, a logging handler's, a thread's), a warning and a multi-line print are one record each;
 * lines written to the descriptors stay a record per line. Real runtime, real Python (the default,
 * and the oldest and newest under pyenv), logs read from its real stderr.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { env, type LogLine, pyenvPython, type Runtime, startRuntime } from './helpers.js';

const PYTHONS: Array<[string, string | null]> = [
  ['default', 'python3'],
  ['3.7', pyenvPython('3.7')],
  ['3.13', pyenvPython('3.13')],
];

for (const [version, python] of PYTHONS) {
  describe(`handler output as records (Python ${version})`, { skip: python === null && 'not under pyenv' }, () => {
    let rt: Runtime;
    before(async () => {
      rt = await startRuntime({
        handler: 'output.write',
        env: { ASYA_LOG_LEVEL: 'INFO', ASYA_PYTHONEXECUTABLE: python ?? undefined },
      });
    });
    after(async () => {
      await rt.stop();
    });

    /** The handler's records for one message, once its last line ("done …") is in. */
    async function records(what: string, id = what): Promise<LogLine[]> {
      await rt.send(env({ what }, { id }));
      await rt.waitForHandlerLine(`done ${what}`);
      return rt.logs.filter((l) => l.src === 'handler' && l.id === id && l.msg !== `done ${what}`);
    }

    it('traceback.print_exc(): one record, the exception as its message, the chain in its traceback', async () => {
      const [record, ...more] = await records('print_exc');
      assert.deepEqual(more, []);
      assert.equal(record?.level, 'info');
      assert.equal(record?.stream, 'stderr');
      assert.equal(record?.msg, 'ValueError: bad value');
      const tb = String(record?.traceback);
      assert.match(tb, /^Traceback \(most recent call last\):\n {2}File ".*output\.py", line \d+, in _chained\n/);
      assert.match(tb, /KeyError: 'missing'\n\nDuring handling of the above exception, another exception occurred:\n/);
      assert.match(tb, /ValueError: bad value$/);
    });

    it('traceback.print_stack(): one record', async () => {
      const [record, ...more] = await records('print_stack');
      assert.deepEqual(more, []);
      assert.match(String(record?.msg), /^ {2}File ".*output\.py", line \d+, in write\n {4}traceback\.print_stack/);
    });

    it("logging.exception(): one record, by the runtime's default handler or by a logging handler of the handler's own", async () => {
      const [byDefault, ...more] = await records('exception_default');
      assert.deepEqual(more, []);
      assert.equal(byDefault?.level, 'error');
      assert.equal(byDefault?.logger, 'plain');
      assert.equal(byDefault?.msg, 'it failed');
      assert.match(String(byDefault?.traceback), /ValueError: bad value\n$/);
      const [own, ...others] = await records('exception_configured');
      assert.deepEqual(others, []);
      assert.equal(own?.stream, 'stderr');
      assert.equal(own?.msg, 'ERROR:configured:it failed');
      assert.match(String(own?.traceback), /^Traceback \(most recent call last\):\n[\s\S]*ValueError: bad value$/);
    });

    it('warnings.warn(): one WARNING record with category, filename and line, once per place as Python shows it', async () => {
      const [record, ...more] = await records('warn', 'warn-1');
      assert.deepEqual(more, []);
      assert.equal(record?.level, 'warn');
      assert.equal(record?.logger, 'py.warnings');
      assert.equal(record?.msg, 'UserWarning: the old api');
      assert.equal(record?.category, 'UserWarning');
      assert.match(String(record?.filename), /output\.py$/);
      assert.equal(typeof record?.lineno, 'number');
      assert.deepEqual(await records('warn', 'warn-2'), [], "Python's default filter: once per place");
    });

    it('print(): a write of several lines is one record; single lines stay lines; a line begun by one write and ended by the next is one line', async () => {
      const lines = await records('prints');
      assert.deepEqual(
        lines.map((l) => [l.stream, l.msg]),
        [
          ['stdout', 'two\nlines'],
          ['stdout', 'one line'],
          ['stdout', 'begun and ended'],
          ['stdout', 'then two\nmore'],
        ],
      );
      // Several lines whose last is never ended (end=""): written as they are when the call ends.
      await rt.send(env({ what: 'held' }, { id: 'held' }));
      const held = await rt.waitForLog((l) => l.id === 'held' && l.src === 'handler');
      assert.equal(held.msg, 'held\nunended');
    });

    it("a line one call leaves open is that call's record, not the start of the next call's", async () => {
      await rt.send(env({ what: 'open', n: 1 }, { id: 'open-1' }));
      await rt.send(env({ what: 'open', n: 2 }, { id: 'open-2' }));
      const second = await rt.waitForLog((l) => l.src === 'handler' && l.msg === 'a line left open by 2');
      const first = rt.logs.find((l) => l.src === 'handler' && l.msg === 'a line left open by 1');
      assert.equal(first?.id, 'open-1');
      assert.equal(second.id, 'open-2');
    });

    it('a write to the descriptor itself (os.write, C printf) stays a record per line', async () => {
      const lines = await records('native', 'native-2');
      assert.deepEqual(
        lines.map((l) => l.msg),
        ['native one', 'native two'],
      );
    });

    it("a thread's uncaught exception: one record", async () => {
      const [record, ...more] = (await records('thread')).filter((l) => l.msg !== '');
      assert.deepEqual(more, []);
      assert.equal(record?.msg, 'Exception in thread background:');
      assert.match(String(record?.traceback), /ValueError: bad value$/);
    });
  });
}
