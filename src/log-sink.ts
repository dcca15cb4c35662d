/**
 * Where log lines go: the process's stderr (fd 2), without ever letting a reader that stopped
 * reading stop the runtime.
 *
 * The container runtime collects stderr through a pipe. When nobody drains that pipe (a stuck log
 * agent, a full disk behind it), a synchronous write blocks once the pipe's 64 KiB are full: with
 * pino.destination({sync: true}) the runtime answered ~48 messages of a chatty handler and then
 * nothing at all, and the handler time limit (a timer on the same event loop) stopped firing too.
 *
 * So on a pipe or socket, lines are written through a non-blocking handle (a net.Socket on fd 2,
 * which libuv drives with O_NONBLOCK writes and an epoll watcher) and wait in its buffer while the
 * reader is slow. The buffer is bounded: a line that would take it past `MAX_PENDING` is dropped and
 * counted, and once the buffer has drained (the reader is back) the count is reported as one line.
 *
 * Regular files (and /dev/null) never block for long, so they stay synchronous: nothing is lost at
 * exit. A terminal also stays synchronous (Node's own TTY streams are blocking, so lines are never
 * interleaved or lost); a terminal that stops reading (Ctrl-S) pauses the runtime, as any program.
 *
 * Rejected: pino.destination({sync: false}) (SonicBoom) writes with fs.write on the libuv threadpool:
 * a stalled pipe blocks a pool thread for good, its buffer drops only whole batches, and process exit
 * waits for the pool; process.stderr on a pipe keeps the process alive until everything is flushed.
 * Caveat: O_NONBLOCK is a property of the pipe's open file, so a parent that shares our stderr (a
 * shell that did not `exec`) sees it too.
 */

import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tty from 'node:tty';

/** Log text allowed to wait for a slow reader (~4 000 typical lines). Beyond it, lines are dropped. */
export const MAX_PENDING = 1024 * 1024;

export type SinkKind = 'stream' | 'terminal' | 'file';

export interface LogSink {
  readonly kind: SinkKind;
  /** pino calls this with each formatted line. Never blocks on a stalled reader. */
  write(line: string): void;
  /** Resolves once everything written so far has reached the reader, or after `timeoutMs`. */
  flush(timeoutMs: number): Promise<void>;
  /** Called with the number of dropped lines once the reader has caught up. */
  onRecovered: ((dropped: number) => void) | null;
}

export function stderrKind(fd = 2): SinkKind {
  if (tty.isatty(fd)) return 'terminal';
  try {
    const stat = fs.fstatSync(fd);
    return stat.isFIFO() || stat.isSocket() ? 'stream' : 'file';
  } catch {
    return 'file'; // closed fd 2: writes fail and are ignored below
  }
}

let shared: LogSink | null = null;

/**
 * The one sink on fd 2 for this process (libuv allows one handle per descriptor, and every logger
 * must share the bound and the drop count).
 */
export function stderrSink(): LogSink {
  shared ??= new Batching(stderrKind() === 'stream' ? new StreamSink(2, MAX_PENDING) : new SyncSink(stderrKind()));
  return shared;
}

/** How long a batched line may wait for others to be written with it. */
export const BATCH_MS = 20;
/** Batched text beyond which it is written at once. */
export const BATCH_BYTES = 16 * 1024;

const PINO_METADATA: unique symbol = Symbol.for('pino.metadata');

/** Loggers whose lines may be batched (see Batching); pino tells the sink which logger wrote a line. */
const batchedLoggers = new WeakSet<object>();

export function markBatched(logger: object): void {
  batchedLoggers.add(logger);
}

/**
 * Lines from marked loggers (the one line per handled message) that come faster than one per BATCH_MS
 * wait up to BATCH_MS and are written together: under load one write(2) carries many of them, instead of one system call a message, and
 * a log agent reading a pipe wakes once per batch instead of once per message (~10% of the
 * supervisor's CPU a message with a busy pool, issue #17). Any other line writes what waits first, so
 * the order on stderr is the order of the calls, and a warning or a FATAL line is never late.
 * Flushed before exit; only a SIGKILL of the supervisor loses what waits (at most BATCH_MS of lines).
 */
export class Batching implements LogSink {
  /** pino sets `lastLogger` on a stream that asks for it, before each write. */
  readonly [PINO_METADATA] = true;
  lastLogger: object | undefined = undefined;
  private waiting = '';
  private timer: NodeJS.Timeout | null = null;
  /** When the last batched line came (performance.now()). */
  private lastBatched = -Infinity;

  constructor(private readonly inner: LogSink) {
    process.on('exit', () => this.writeWaiting());
  }

  get kind(): SinkKind {
    return this.inner.kind;
  }

  get onRecovered(): ((dropped: number) => void) | null {
    return this.inner.onRecovered;
  }

  set onRecovered(callback: ((dropped: number) => void) | null) {
    this.inner.onRecovered = callback;
  }

  write(line: string): void {
    const from = this.lastLogger;
    this.lastLogger = undefined;
    if (from !== undefined && batchedLoggers.has(from)) {
      // Sparse lines (the last came BATCH_MS or more ago: slow handlers, light traffic) gain nothing
      // from waiting, and the timer would cost a wake-up of its own per line: written at once.
      const now = performance.now();
      const sparse = now - this.lastBatched >= BATCH_MS;
      this.lastBatched = now;
      if (sparse && this.waiting === '') {
        this.inner.write(line);
        return;
      }
      this.waiting += line;
      if (this.waiting.length >= BATCH_BYTES) this.writeWaiting();
      else this.timer ??= setTimeout(() => this.writeWaiting(), BATCH_MS).unref();
      return;
    }
    this.writeWaiting();
    this.inner.write(line);
  }

  flush(timeoutMs: number): Promise<void> {
    this.writeWaiting();
    return this.inner.flush(timeoutMs);
  }

  private writeWaiting(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.waiting === '') return;
    const text = this.waiting;
    this.waiting = '';
    this.inner.write(text);
  }
}

/** Wait (at most `timeoutMs`) for pending log lines to reach stderr: before process.exit. */
export function flushLogs(timeoutMs: number): Promise<void> {
  return shared ? shared.flush(timeoutMs) : Promise.resolve();
}

class SyncSink implements LogSink {
  onRecovered: ((dropped: number) => void) | null = null;

  constructor(readonly kind: SinkKind) {}

  write(line: string): void {
    try {
      fs.writeSync(2, line);
    } catch {
      // stderr closed or the disk full: a log line is not worth stopping for
    }
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }
}

export class StreamSink implements LogSink {
  readonly kind = 'stream';
  onRecovered: ((dropped: number) => void) | null = null;
  private readonly out: net.Socket;
  private dropped = 0;
  /** The reader closed its end (EPIPE): nothing can be written any more. */
  private broken = false;

  constructor(
    fd: number,
    private readonly limit: number,
  ) {
    this.out = new net.Socket({ fd, readable: false, writable: true });
    this.out.on('error', () => {
      this.broken = true;
    });
    // 'drain' fires when the buffer is empty again after a write found it above its high-water
    // mark, which every drop implies: the reader is back.
    this.out.on('drain', () => {
      if (this.dropped === 0) return;
      const dropped = this.dropped;
      this.dropped = 0;
      this.onRecovered?.(dropped);
    });
  }

  /** Bytes (characters) waiting for the reader. */
  get pending(): number {
    return this.out.writableLength;
  }

  write(line: string): void {
    if (this.broken) return;
    if (this.out.writableLength + line.length > this.limit) {
      this.dropped += lineCount(line); // a batch is several lines
      return;
    }
    this.out.write(line);
  }

  async flush(timeoutMs: number): Promise<void> {
    // Polled: 'drain' only fires after a write found the buffer above its high-water mark.
    const deadline = Date.now() + timeoutMs;
    while (!this.broken && this.out.writableLength > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10).unref());
    }
  }
}

function lineCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return Math.max(n, 1);
}
