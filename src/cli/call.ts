/**
 * `asya-runtime call`: the whole runtime for one-off use. The supervisor and the shim start on a
 * private socket, each message goes through that socket exactly as the sidecar would send it,
 * and the answers are printed. What works here works in the pod.
 *
 * After each answer a REPORT line on stderr (like AWS Lambda's) gives the duration, the handler's
 * load time (on the first call to a freshly loaded process only) and the Python process's peak
 * resident memory. `--watch` keeps the runtime up and reloads the Python process (the supervisor's
 * recycle path) whenever a .py file in the handler's source directories changes, then sends the messages
 * again (watch.ts; what is watched, watch-dirs.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../logger.js';
import { type RunningRuntime, startRuntime } from '../runtime/runtime.js';
import {
  callTerminal,
  handlerConfig,
  handlerEnvironment,
  handlerOptions,
  handlerOptionsHelp,
  LOCAL_PATH,
} from './environment.js';
import {
  messageOptions,
  messagesHelp,
  NoAnswerError,
  parseRoute,
  positiveSeconds,
  printAnswer,
  printPayloads,
  readMessages,
  sendMessages,
  UsageError,
} from './messages.js';
import { isReportFormat, Reporter } from './report.js';
import { watch } from './watch.js';
import { WATCH_MAX_DIRS } from './watch-dirs.js';

export const callHelp = `Usage: asya-runtime call --handler SPEC [options] [JSON | -]

Start the runtime on your handler, send it messages through its socket the way the sidecar does,
print the answers (the output envelopes), and stop. Answers go to stdout; what the handler prints and
logs, warnings and errors go to stderr (the runtime's own lifecycle lines too with --verbose or at
DEBUG). After each answer, one line on stderr reports it:
  REPORT  duration: 3.21 ms  init duration: 412 ms  peak RSS: 38.4 MiB
duration is from sending the message to its whole answer; init duration is the handler's load time
(import and __init__), on the first answer of a freshly loaded Python process only; peak RSS is the
most resident memory that Python process has used so far (VmHWM, Linux only): that process alone,
without the supervisor (~55 MiB) and the reaper (~14 MiB) the pod also holds.

Options:
${handlerOptionsHelp}
  --payload JSON     a message (repeatable; all go to the same started handler)
  --file PATH        messages from a file: one JSON value, or JSON lines
  --envelope         messages are whole envelopes (default: payloads, wrapped in an envelope
                     whose route is --route, starting at its first actor)
  --route a,b,c      actors of that route (default: actor)
  --timeout SECONDS  handler time limit per message (default: $ASYA_HANDLER_TIMEOUT, else none)
  --payloads-only    print only each output's payload as the runtime wrote it (one line each when
                     piped, indented on a terminal; an error is printed whole), and no REPORT lines
  --report FORMAT    text (default), json (one object per answer on stderr: duration_ms,
                     init_duration_ms, peak_rss_bytes, python_pid) or none
  -v, --verbose      also the runtime's own lines (starting, listening, loaded, ready, stopped)
  --watch            keep running: when a .py file in the handler's source directories changes
                     (however it is saved: in place, renamed over, deleted and created, git
                     checkout; a new module or package directory too), restart the Python process,
                     print the new load time and send the messages again (a load or message still
                     running is not waited for: its Python process is stopped); Ctrl-C stops (exit 0).
                     Watched: the import path entry the module was found in (above its packages)
                     unless it is site-packages, and
                     every directory below it, except hidden ones, __pycache__, site-packages,
                     dist-packages, node_modules, venv and any virtualenv (pyvenv.cfg) or conda
                     environment (conda-meta); symbolic links are not followed; at most
                     ${WATCH_MAX_DIRS} directories (a WARNING says when more were found;
                     --log-level DEBUG logs the count).
                     A handler that does not load is reported and loaded again on the next
                     change, the first load too: after a failed first load the current directory
                     is watched as well as the one on PYTHONPATH that holds the module.
  --watch-dir DIR    also watch this directory and the ones below it (repeatable), e.g. a library
                     on your PYTHONPATH
  -h, --help

${messagesHelp}
Exit code: 0 every answer ok (with --watch: stopped by Ctrl-C), 1 an answer was an error,
2 bad usage or configuration, 3 Python not found, 4 the handler failed to load (not with
--watch: it waits for the next change), 130 stopped by Ctrl-C (143 by SIGTERM) before every
answer was printed.

Examples:
  asya-runtime call --handler my_module.process '{"text": "hi"}'
  asya-runtime call --handler model.Classifier.predict --payload '{"x": 1}' --payload '{"x": 2}'
  asya-runtime call --handler my_module.process --watch '{"text": "hi"}'
  cat requests.jsonl | asya-runtime call --handler router.route --mode envelope --envelope`;

const callOptions = {
  'payloads-only': { type: 'boolean', default: false },
  report: { type: 'string', default: 'text' },
  verbose: { type: 'boolean', short: 'v', default: false },
  watch: { type: 'boolean', default: false },
  'watch-dir': { type: 'string', multiple: true },
} as const;

export async function call(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...handlerOptions, ...messageOptions, ...callOptions },
  });
  if (values.timeout !== undefined) positiveSeconds('--timeout', values.timeout);
  const report = values['payloads-only'] ? 'none' : values.report;
  if (!isReportFormat(report))
    throw new UsageError(`--report ${JSON.stringify(report)} is not valid: expected text, json or none`);
  const actors = parseRoute(values.route);
  // Read everything first: a typo in a message should not cost a model load.
  const messages = readMessages(
    { positionals, payloads: values.payload, file: values.file },
    'message',
    values.envelope,
  );
  const extraDirs = (values['watch-dir'] ?? []).map((d) => path.resolve(d));
  for (const d of extraDirs) if (!isDirectory(d)) throw new UsageError(`--watch-dir ${d} is not a directory`);
  // With --watch, Python must read the edited source, never a .pyc it wrote a moment before (its
  // check is the source's mtime in whole seconds and its size: an edit within the second can match).
  if (values.watch) process.env.PYTHONDONTWRITEBYTECODE ??= '1';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-call-'));
  try {
    const env = handlerEnvironment(values, dir);
    const config = handlerConfig(env);
    const log = createLogger(config.logLevel, config.logFormat, undefined, {
      hideLifecycle: !values.verbose && config.logLevel !== 'debug',
    });
    // One Python process whatever ASYA_WORKERS says: messages are sent one at a time, and --watch reloads one.
    let runtime: RunningRuntime | null = null;
    const start = () => {
      runtime = startRuntime({ ...config, workers: 1 }, log, {
        env,
        extraPath: LOCAL_PATH(),
        terminal: callTerminal(),
      });
      return runtime;
    };
    const reporter = new Reporter(() => runtime?.loaded() ?? null, report);
    const send = () =>
      sendMessages(config.socketPath, messages, values.envelope, actors, {
        print: values['payloads-only'] ? printPayloads : printAnswer,
        answered: (ms) => reporter.answered(ms),
      });
    if (values.watch)
      return await watch({ start, send, handler: config.handler, pythonPath: env.PYTHONPATH, extraDirs, log });
    const once = start();
    let interrupted: NodeJS.Signals | null = null;
    const stop = (signal: NodeJS.Signals) => {
      interrupted ??= signal;
      // Whoever presses Ctrl-C wants the terminal back, not the message in flight finished.
      void once.shutdown('interrupted', 0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // Stopped by a signal before every answer was printed: the shell's code for it (130 for Ctrl-C), so
    // `call ... && next` does not go on. (--watch runs until stopped: there Ctrl-C is the normal end.)
    const signalled = (code: number) => (interrupted === null ? code : 128 + os.constants.signals[interrupted]);
    if (!(await once.ready)) return signalled(await once.done);
    let failed: boolean;
    try {
      failed = await send();
    } catch (err) {
      // The runtime stopping under a message (Ctrl-C) closes its connection: the signal is the cause.
      if (interrupted === null || !(err instanceof NoAnswerError)) throw err;
      return signalled(await once.done);
    }
    const code = await once.shutdown('call finished');
    return signalled(code !== 0 ? code : failed ? 1 : 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
