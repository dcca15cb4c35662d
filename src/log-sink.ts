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
  shared ??= stderrKind() === 'stream' ? new StreamSink(2, MAX_PENDING) : new SyncSink(stderrKind());
  return shared;
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
      this.dropped++;
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
