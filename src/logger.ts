/**
 * Logs on stderr (stdout stays free for CLI output): structured JSON for log collectors, or
 * human-readable lines when stderr is a terminal. Writes are synchronous: the hot path writes one
 * short line per message at INFO (~9 µs, docs/observing.md), and a FATAL line must reach the terminal
 * before exit.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config.js';

export type { Logger };

export function createLogger(level: LogLevel, human = process.stderr.isTTY === true): Logger {
  const options = { name: 'asya-runtime', level, base: { pid: process.pid } };
  if (human) {
    return pino(
      options,
      pretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: `pid,hostname,name,${MULTILINE_FIELDS.join(',')}`, singleLine: true, messageFormat: humanMessage }),
    );
  }
  return pino(
    { ...options, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    pino.destination({ dest: 2, sync: true }),
  );
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
    if (typeof value === 'string' && value.trim() !== '') text += `\n  ${field}:\n${value.replace(/\n$/, '').replace(/^/gm, '    ')}`;
  }
  return text;
}

/**
 * Splits a stream into lines for the log, so a handler's `print` becomes one record per line.
 * A line longer than `maxLine` is cut into pieces rather than held in memory.
 */
export class LineSplitter {
  private pending = '';

  constructor(
    private readonly emit: (line: string) => void,
    private readonly maxLine = 16 * 1024,
  ) {}

  push(chunk: Buffer | string): void {
    const text = this.pending + chunk.toString();
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    for (const line of lines) this.emit(line.endsWith('\r') ? line.slice(0, -1) : line);
    while (this.pending.length > this.maxLine) {
      this.emit(this.pending.slice(0, this.maxLine));
      this.pending = this.pending.slice(this.maxLine);
    }
  }

  flush(): void {
    if (this.pending) this.emit(this.pending);
    this.pending = '';
  }
}
