/**
 * What the handler writes, line by line, as log records: pure, no I/O (worker.ts reads the pipes and
 * logs). A line is a record of its own, unless the shim sent it structured (python-shim/src/output.py):
 * a `logging` record, a warning, or one write of several lines (a traceback, a logging handler's line
 * with its traceback, a multi-line print), which is then one record.
 */
import type { LogLevel } from '../config.js';

/** A structured line from the shim: the mark, then one JSON object. */
export const PYTHON_LOG_MARK = '\x1easya-log ';

export interface OutputRecord {
  level: LogLevel;
  msg: string;
  /** The record's own fields (stream, logger, traceback, a warning's place), before the process's and the message's. */
  fields: Record<string, unknown>;
  /** The message id the record names itself (context.log), instead of the message in flight. */
  id?: string;
  /** What the crash report's last lines keep of it. */
  tail: string;
}

/** The line as the shim's structured record, or as the plain line it is. */
export function outputRecord(stream: 'stdout' | 'stderr', line: string): OutputRecord {
  const plain = (): OutputRecord => ({ level: 'info', msg: line, fields: { stream }, tail: line });
  if (!line.startsWith(PYTHON_LOG_MARK)) return plain();
  let record: PythonRecord;
  try {
    record = JSON.parse(line.slice(PYTHON_LOG_MARK.length)) as PythonRecord;
  } catch {
    return plain();
  }
  if (record === null || typeof record !== 'object') return plain();
  if (typeof record.o === 'string') {
    // One write of several lines: a traceback in it is the record's `traceback`, as a logging record's is.
    const { msg, traceback } = splitTraceback(record.o);
    return { level: 'info', msg, fields: traceback === undefined ? { stream } : { stream, traceback }, tail: record.o };
  }
  const msg = String(record.m);
  const fields: Record<string, unknown> = { logger: String(record.n), traceback: record.e || undefined };
  const warning = record.f;
  if (warning && typeof warning === 'object') {
    fields.category = String(warning.category);
    fields.filename = String(warning.filename);
    fields.lineno = Number(warning.lineno);
  }
  return {
    level: pythonLevel(Number(record.l)),
    msg,
    fields,
    ...(record.i === undefined ? {} : { id: String(record.i) }),
    tail: record.e ? `${msg}\n${record.e}` : msg,
  };
}

/** A structured line of the shim (see setup_logging, send_record and HandlerOutput there). */
interface PythonRecord {
  /** One write of several lines to sys.stdout or sys.stderr. */
  o?: string;
  /** levelno */
  l?: number;
  /** logger name */
  n?: string;
  m?: string;
  /** formatted exception, the user's frames only */
  e?: string;
  /** the message's id (context.log's records) */
  i?: unknown;
  /** a warning's category, filename and lineno */
  f?: { category?: unknown; filename?: unknown; lineno?: unknown };
}

/** Python's levels onto the runtime's: DEBUG, INFO, WARNING, ERROR and CRITICAL, custom levels by range. */
function pythonLevel(levelno: number): LogLevel {
  return levelno < 20 ? 'debug' : levelno < 30 ? 'info' : levelno < 40 ? 'warn' : 'error';
}

/** The first line of a Python traceback, at the start of a line (an exception group's is indented). */
const TRACEBACK_START = /^(?: {2}\+ Exception Group )?Traceback \(most recent call last\):$/m;

/**
 * A text that holds a traceback: the traceback, and as the message what comes before it
 * (`ERROR:root:failed`, `Exception in thread t:`), or, when it starts the text, its last unindented line
 * (the exception, the last one of a chain).
 */
function splitTraceback(text: string): { msg: string; traceback?: string } {
  const at = text.search(TRACEBACK_START);
  if (at === -1) return { msg: text };
  const traceback = text.slice(at);
  if (at > 0) return { msg: text.slice(0, at).trimEnd(), traceback };
  const lines = traceback.split('\n');
  for (let i = lines.length - 1; i > 0; i--) {
    const line = lines[i]!;
    if (line !== '' && !/^\s/.test(line) && !TRACEBACK_START.test(line)) return { msg: line, traceback };
  }
  return { msg: lines[0]!.trim(), traceback };
}
