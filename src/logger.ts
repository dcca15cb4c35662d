/**
 * Logs on stderr (stdout stays free for CLI output): structured JSON for log collectors, or
 * human-readable lines, as ASYA_LOG_FORMAT says (unset: human-readable on a terminal). Where the lines
 * go, and why a reader that stops reading can never stop the runtime, is log-sink.ts. The hot path writes one short line per message
 * at INFO (~9 µs, docs/observing.md).
 */
import { StringDecoder } from 'node:string_decoder';
import { type LogFn, type Logger, pino } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { LogFormat, LogLevel } from './config.js';
import type { FatalError } from './errors.js';
import { type LogSink, markBatched, stderrSink } from './log-sink.js';

export { flushLogs } from './log-sink.js';
export type { Logger };

/**
 * The line the runtime ends with: `FATAL: <why>` at level fatal, with the exit code and the error's
 * fields. Every exit for a reason (configuration, handler, socket, restarts) writes this one line.
 */
export function logFatal(log: Logger, err: FatalError): void {
  log.fatal({ exit_code: err.exitCode, ...err.fields }, `FATAL: ${err.message}`);
}

/**
 * The runtime's logger. `format`: 'json' or 'pretty' whatever the sink is; 'auto' is pretty on a
 * terminal and JSON otherwise. Every line goes through it, the handler's output included.
 * `hideLifecycle`: INFO lines only with a `src` (what the handler prints and logs, its debugger), for
 * `call`, whose user wants the handler's output and the answers; warnings and errors always show.
 */
export function createLogger(
  level: LogLevel,
  format: LogFormat = 'auto',
  sink: LogSink = stderrSink(),
  { hideLifecycle = false } = {},
): Logger {
  const options = {
    name: 'asya-runtime',
    level,
    base: { pid: process.pid },
    ...(hideLifecycle ? { hooks: { logMethod: handlerLinesAtInfo } } : {}),
  };
  let log: Logger;
  if (format === 'pretty' || (format === 'auto' && sink.kind === 'terminal')) {
    const pretty = prettyFactory({
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: `pid,hostname,name,${MULTILINE_FIELDS.join(',')}`,
      singleLine: true,
      messageFormat: humanMessage,
    });
    log = pino(options, { write: (line: string) => sink.write(pretty(line)) });
  } else {
    log = pino(
      { ...options, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
      sink,
    );
  }
  sink.onRecovered = (dropped) =>
    log.warn(
      { dropped_lines: dropped },
      `stderr was not being read: dropped ${dropped} log line(s) while its buffer was full`,
    );
  return log;
}

const INFO = 30;

function handlerLinesAtInfo(this: Logger, args: Parameters<LogFn>, method: LogFn, level: number): void {
  if (level === INFO && (args[0] as { src?: unknown } | null)?.src === undefined) return;
  method.apply(this, args);
}

const batchedChildren = new WeakMap<Logger, Logger>();

/**
 * The same logger, whose lines may wait up to BATCH_MS to be written with others (log-sink.ts): for
 * the one line per handled message, never for warnings or errors.
 */
export function batched(log: Logger): Logger {
  let child = batchedChildren.get(log);
  if (child === undefined) {
    child = log.child({});
    markBatched(child);
    batchedChildren.set(log, child);
  }
  return child;
}

/** Fields that hold several lines (tracebacks): printed as lines under the message on a terminal. */
const MULTILINE_FIELDS = ['traceback', 'stderr_tail'];

/**
 * A terminal line: the message without the `FATAL: ` that JSON lines carry (pino-pretty prints the
 * level already), then each multi-line field as indented lines rather than one escaped string.
 */
function humanMessage(record: Record<string, unknown>, messageKey: string): string {
  const raw = record[messageKey];
  let text = typeof raw === 'string' ? raw.replace(/^FATAL: /, '') : String(raw ?? '');
  for (const field of MULTILINE_FIELDS) {
    const value = record[field];
    if (typeof value === 'string' && value.trim() !== '')
      text += `\n  ${field}:\n${value.replace(/\n$/, '').replace(/^/gm, '    ')}`;
  }
  return text;
}

/**
 * Splits a stream into lines for the log, so a handler's `print` becomes one record per line.
 * A line longer than `maxLine` is cut into pieces rather than held in memory.
 */
export class LineSplitter {
  private pending = '';
  /** A character whose UTF-8 bytes a chunk cut in two is decoded whole, with the next chunk. */
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly emit: (line: string) => void,
    private readonly maxLine = 16 * 1024,
  ) {}

  push(chunk: Buffer | string): void {
    const text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    for (const line of lines) this.emit(line.endsWith('\r') ? line.slice(0, -1) : line);
    while (this.pending.length > this.maxLine) {
      this.emit(this.pending.slice(0, this.maxLine));
      this.pending = this.pending.slice(this.maxLine);
    }
  }

  flush(): void {
    this.pending += this.decoder.end();
    if (this.pending) this.emit(this.pending);
    this.pending = '';
  }
}
