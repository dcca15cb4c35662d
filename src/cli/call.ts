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
import type { FatalError } from '../errors.js';
import { stderrSink } from '../log-sink.js';
import { createLogger } from '../logger.js';
import { peakResidentBytes } from '../proc-memory.js';
import { type RunningRuntime, startRuntime } from '../runtime/runtime.js';
import type { ReadyInfo } from '../worker/worker.js';
import { handlerConfig, handlerEnvironment, handlerOptions, handlerOptionsHelp } from './environment.js';
import {
  messageOptions,
  NoAnswerError,
  parseRoute,
  positiveSeconds,
  printAnswer,
  printPayloads,
  readMessages,
  sendMessages,
  UsageError,
} from './messages.js';

/** Editors write a file in several steps (truncate, write, rename): one reload for all of them. */
const WATCH_DEBOUNCE_MS = 150;

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
    const log = createLogger(config.logLevel);
    // One Python process whatever ASYA_WORKERS says: messages are sent one at a time, and --watch reloads one.
    const runtime = startRuntime({ ...config, workers: 1 }, log, { env, extraPath: [process.cwd()] });
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

/** A line for people on stderr, in order with the log lines (the same sink). */
function say(line: string): void {
  stderrSink().write(`${line}\n`);
}

/** The REPORT line after each answer; the load time only on a freshly loaded process's first one. */
class Reporter {
  /** The pid whose load time was already reported. */
  private reportedPid: number | null = null;

  constructor(
    private readonly runtime: RunningRuntime,
    private readonly enabled: boolean,
  ) {}

  answered(ms: number): void {
    if (!this.enabled) return;
    const loaded = this.runtime.loaded();
    const fields = [`duration: ${ms.toFixed(2)} ms`];
    if (loaded && loaded.pid !== this.reportedPid) {
      fields.push(`init duration: ${loaded.load_ms} ms`);
      this.reportedPid = loaded.pid;
    }
    const peak = loaded ? peakResidentBytes(loaded.pid) : null;
    fields.push(`peak RSS: ${peak === null ? 'n/a' : `${(peak / 2 ** 20).toFixed(1)} MiB`}`);
    say(`REPORT  ${fields.join('  ')}`);
  }
}

/**
 * The directories to watch: the one the handler's module was imported from (above its packages,
 * so sibling modules count too) and the --watch-dir ones.
 */
export function watchRoots(loaded: ReadyInfo | null, extra: string[]): string[] {
  const roots = new Set(extra);
  if (loaded?.module_file) {
    let dir = path.dirname(loaded.module_file);
    while (fs.existsSync(path.join(dir, '__init__.py')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    roots.add(dir);
  }
  return [...roots];
}

/** A .py file of the user's, not one in a cache, a virtualenv or a hidden directory. */
function isSource(relative: string): boolean {
  if (!relative.endsWith('.py')) return false;
  return !relative
    .split(path.sep)
    .some(
      (part) => part === '__pycache__' || part === 'site-packages' || part === 'node_modules' || part.startsWith('.'),
    );
}

async function watch(runtime: RunningRuntime, send: () => Promise<boolean>, extraDirs: string[]): Promise<number> {
  const roots = watchRoots(runtime.loaded(), extraDirs);
  let changed: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let chain = Promise.resolve();
  let stopped = false;

  const cycle = async () => {
    try {
      await send();
    } catch (err) {
      if (!(err instanceof NoAnswerError) || stopped) throw err;
      say(`WATCH  ${err.message}`);
    }
  };
  const reload = async (file: string) => {
    if (stopped) return;
    say(`RELOAD  ${file} changed: restarting the Python process`);
    let ready: ReadyInfo;
    try {
      ready = await runtime.reload(`${file} changed`);
    } catch (err) {
      if (stopped) return;
      const fatal = err as FatalError;
      const traceback = typeof fatal.fields?.traceback === 'string' ? `\n${fatal.fields.traceback.trimEnd()}` : '';
      say(`RELOAD  failed: ${fatal.message}${traceback}\nRELOAD  waiting for the next change`);
      return;
    }
    say(`RELOAD  handler loaded in ${ready.load_ms} ms (pid ${ready.pid})`);
    await cycle();
  };
  const onChange = (root: string, name: string | Buffer | null) => {
    if (name === null || stopped) return;
    const relative = name.toString();
    if (!isSource(relative)) return;
    changed = path.relative(process.cwd(), path.join(root, relative)) || relative;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const file = changed!;
      changed = null;
      chain = chain.then(() => reload(file));
    }, WATCH_DEBOUNCE_MS);
  };

  const watchers: fs.FSWatcher[] = [];
  for (const root of roots) {
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(root, { recursive: true }, (_event, name) => onChange(root, name));
    } catch {
      // recursive watching is not available here: the directory itself only
      watcher = fs.watch(root, (_event, name) => onChange(root, name));
    }
    watcher.on('error', (err) => say(`WATCH  ${root}: ${err.message}`));
    watchers.push(watcher);
  }
  say(
    roots.length > 0
      ? `WATCH  watching ${roots.map((r) => path.relative(process.cwd(), r) || '.').join(', ')} for .py changes; Ctrl-C to stop`
      : 'WATCH  the handler has no module file to watch: pass --watch-dir DIR; Ctrl-C to stop',
  );

  chain = chain.then(cycle);
  const code = await runtime.done;
  stopped = true;
  if (timer) clearTimeout(timer);
  for (const w of watchers) w.close();
  await chain.catch(() => undefined);
  return code;
}
