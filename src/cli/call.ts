/**
 * `asya-runtime call`: the whole runtime for one-off use. The supervisor and the shim start on a
 * private socket, each message goes through that socket exactly as the sidecar would send it,
 * and the answers are printed. What works here works in the pod.
 *
 * After each answer a REPORT line on stderr (like AWS Lambda's) gives the duration, the handler's
 * load time (on the first call to a freshly loaded process only) and the Python process's peak
 * resident memory. `--watch` keeps the runtime up and reloads the Python process (the supervisor's
 * recycle path) whenever a .py file under the handler's directory changes, then sends the messages again.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../logger.js';
import { startRuntime } from '../runtime/runtime.js';
import { callTerminal, handlerConfig, handlerEnvironment, handlerOptions, handlerOptionsHelp } from './environment.js';
import {
  messageOptions,
  parseRoute,
  positiveSeconds,
  printAnswer,
  printPayloads,
  readMessages,
  sendMessages,
  UsageError,
} from './messages.js';
import { Reporter } from './report.js';
import { watch } from './watch.js';

export const callHelp = `Usage: asya-runtime call --handler SPEC [options] [JSON | -]

Start the runtime on your handler, send it messages through its socket the way the sidecar does,
print the answers (the output envelopes), and stop. Logs, including what the handler prints, go to
stderr; answers go to stdout. After each answer, one line on stderr reports it:
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
  --payloads-only    print only each output's payload (one line each), and no REPORT lines
  --watch            keep running: when a .py file under the handler module's directory changes,
                     restart the Python process, print the new load time and send the messages
                     again; Ctrl-C stops (exit 0). A handler that no longer loads is reported and
                     retried on the next change.
  --watch-dir DIR    also watch this directory (repeatable), e.g. a library on your PYTHONPATH
  -h, --help

JSON is a message; "-" or no message at all reads stdin (one JSON value or JSON lines).
Exit code: 0 every answer ok (with --watch: stopped by Ctrl-C), 1 an answer was an error,
2 bad usage or configuration, 3 Python not found, 4 the handler failed to load.

Examples:
  asya-runtime call --handler my_module.process '{"text": "hi"}'
  asya-runtime call --handler model.Classifier.predict --payload '{"x": 1}' --payload '{"x": 2}'
  asya-runtime call --handler my_module.process --watch '{"text": "hi"}'
  cat requests.jsonl | asya-runtime call --handler router.route --mode envelope --envelope`;

const callOptions = {
  'payloads-only': { type: 'boolean', default: false },
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
  const actors = parseRoute(values.route);
  // Read everything first: a typo in a message should not cost a model load.
  const messages = readMessages({ positionals, payloads: values.payload, file: values.file }, 'message');
  const extraDirs = (values['watch-dir'] ?? []).map((d) => path.resolve(d));
  for (const d of extraDirs) if (!isDirectory(d)) throw new UsageError(`--watch-dir ${d} is not a directory`);
  // With --watch, Python must read the edited source, never a .pyc it wrote a moment before (its
  // check is the source's mtime in whole seconds and its size: an edit within the second can match).
  if (values.watch) process.env.PYTHONDONTWRITEBYTECODE ??= '1';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-call-'));
  try {
    const env = handlerEnvironment(values, dir);
    const config = handlerConfig(env);
    const log = createLogger(config.logLevel, config.logFormat);
    // One Python process whatever ASYA_WORKERS says: messages are sent one at a time, and --watch reloads one.
    const runtime = startRuntime({ ...config, workers: 1 }, log, {
      env,
      extraPath: [process.cwd()],
      terminal: callTerminal(),
    });
    const stop = () => void runtime.shutdown('interrupted');
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (!(await runtime.ready)) return await runtime.done;
    const reporter = new Reporter(runtime, !values['payloads-only']);
    const send = () =>
      sendMessages(config.socketPath, messages, values.envelope, actors, {
        print: values['payloads-only'] ? printPayloads : printAnswer,
        answered: (ms) => reporter.answered(ms),
      });
    if (values.watch) return await watch(runtime, send, extraDirs);
    const failed = await send();
    const code = await runtime.shutdown('call finished');
    return code !== 0 ? code : failed ? 1 : 0;
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
