/**
 * One accepted connection: its request read as it arrives, its read timeout, and its way back to the
 * client (the Exchange). The server (server.ts) accepts, bounds what all connections hold together, and
 * hands each complete frame on.
 *
 * One object per connection with its listeners shared by all connections (they find their connection
 * on the socket), rather than a dozen closures per connection: the per-message path runs the same few
 * functions, which V8 optimises once, and allocates less (issue #17).
 */
import type net from 'node:net';
import { type ErrorCode, type WireError, wireError } from '../errors.js';
import type { Logger } from '../logger.js';
import { errorResponse, FrameDecoder, FrameTooLarge } from './framing.js';
import type { Intake, Reader } from './intake.js';

/** One request's way back to its client. */
export interface Exchange {
  /** Write the framed response and close. */
  respond(chunks: Buffer[]): void;
  /** Close without an answer (the sidecar sees a connection error and retries). */
  abort(): void;
  /** The client closed its connection: nobody will read an answer (see probeClientGone). */
  clientGone(): boolean;
  /** Told once if the connection closes before it is answered (null: no longer). */
  onGone?(listener: (() => void) | null): void;
}

export type FrameHandler = (frame: Buffer, exchange: Exchange) => void;

/** What every connection shares: the server's settings, its bounds and where frames go. */
export interface ConnectionContext {
  readonly maxMessageSize: number;
  readonly readTimeoutMs: number;
  readonly log: Logger;
  readonly onFrame: FrameHandler;
  /** Told of every request answered here with an error before reaching the handler (metrics). */
  readonly onRefused: (code: ErrorCode) => void;
  /** The ledger of the bytes requests hold (arriving or waiting for their answer): it pauses and refuses. */
  readonly intake: Intake;
  /** Connections still open. */
  readonly open: Set<net.Socket>;
}

const CONNECTION = Symbol('asya.connection');
type TaggedSocket = net.Socket & { [CONNECTION]?: Connection };

export class Connection implements Exchange, Reader {
  private readonly decoder: FrameDecoder;
  /** The request is complete (or was refused): nothing more is read into it. */
  private complete = false;
  private answered = false;
  private goneListener: (() => void) | null = null;
  /** The read timeout while the request arrives (ASYA_READ_TIMEOUT); the reaper's after a refusal. */
  private deadline: NodeJS.Timeout | null = null;
  /** Bytes read on this connection, and how many of them the request was: the rest is logged at close. */
  private read = 0;
  private used = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.decoder = new FrameDecoder(ctx.maxMessageSize);
    (socket as TaggedSocket)[CONNECTION] = this;
    ctx.open.add(socket);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', ignore); // a vanished client is not the runtime's problem
    this.armReadTimeout();
  }

  // ---------------------------------------------------------------- Exchange

  respond(chunks: Buffer[]): void {
    if (this.answered) return;
    this.answered = true;
    this.ctx.intake.release(this);
    const socket = this.socket;
    if (socket.destroyed) return;
    // One write: a small answer comes as one buffer (frameChunks); a large one is written as its chunks.
    if (chunks.length === 1) socket.write(chunks[0] as Buffer);
    else {
      socket.cork();
      for (const chunk of chunks) socket.write(chunk);
      socket.uncork();
    }
    this.stopClock();
    if (this.used > 0 && this.read === this.used) {
      // The request was read whole, and nothing after it. An answer the kernel took whole is the
      // client's to read even after we close (a Unix socket keeps queued bytes readable after its peer
      // closes): close now. Waiting for the client's end instead costs a shutdown, one more wake-up and a
      // reaper for clients that never close (~15% of a small message's latency, issue #17). A larger
      // answer is flushed first.
      if (socket.writableLength === 0) {
        socket.destroy();
        return;
      }
      socket.once('finish', closeSocket);
      socket.end();
      socket.setTimeout(this.ctx.readTimeoutMs, closeSocket); // re-armed by every write: a reader that stopped
      return;
    }
    // Refused before the request was read whole, or the client sent more after it (a second request in
    // the same write): it may still be writing, and closing on unread bytes would reset the connection
    // under its write, losing the answer. Half-close and let it finish (Node closes once the client has
    // closed its side); a client that never does is reaped after ASYA_READ_TIMEOUT.
    socket.end();
    if (socket.writableLength === 0) this.deadline = this.after(() => this.reap());
    else socket.setTimeout(this.ctx.readTimeoutMs, closeSocket);
  }

  /** The answered client never closed its side. */
  reap(): void {
    this.socket.destroy();
  }

  abort(): void {
    this.answered = true;
    this.ctx.intake.release(this);
    this.socket.destroy();
  }

  /** Destroyed: closed by us, or the end-of-request probe (probeClientGone) hit EPIPE. */
  clientGone(): boolean {
    return this.socket.destroyed;
  }

  onGone(listener: (() => void) | null): void {
    this.goneListener = listener;
  }

  // ---------------------------------------------------------------- Reader (intake)

  /**
   * Paused by the intake. Its read timeout keeps running (see intake.ts): stalled clients that fill the
   * room are dropped when their time is up, together, not one timeout after another.
   */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  // ---------------------------------------------------------------- the request arriving

  /** The intake refused this connection: it was among the newest still arriving, over its bound. */
  refuse(why: string): void {
    const { received, expected } = this.decoder.progress();
    this.finished();
    this.fail(wireError.connection(`${why} (received ${received} of ${expected ?? 'at least 4'} bytes)`));
  }

  data(chunk: Buffer): void {
    this.read += chunk.length;
    if (this.complete) return;
    try {
      this.decoder.push(chunk, (frame) => this.frame(frame));
    } catch (err) {
      if (!(err instanceof FrameTooLarge)) throw err;
      // Bytes after a request already taken (logged at close) are not a request: its answer is still to come.
      if (this.used > 0) return;
      this.finished();
      this.fail(wireError.tooLarge(err.size, err.limit));
      return;
    }
    if (this.complete) return;
    this.ctx.intake.hold(this, this.decoder.held, true);
  }

  end(): void {
    if (this.complete) {
      if (!this.answered) probeClientGone(this.socket);
      return;
    }
    const { received, expected } = this.decoder.progress();
    this.finished();
    if (received === 0 && expected === null) {
      // Connecting and closing is how a readiness probe (`asya-runtime probe`) or a port check asks
      // whether the socket accepts: a question answered by accepting, not an error to log or count.
      this.answered = true;
      this.ctx.intake.release(this);
      this.ctx.log.debug('client closed the connection without sending a request (a probe)');
      this.socket.end();
      return;
    }
    this.fail(
      wireError.connection(
        `client closed the connection mid-frame (received ${received} of ${expected ?? 'at least 4'} bytes)`,
      ),
    );
  }

  closed(): void {
    this.stopClock();
    const gone = this.goneListener;
    this.goneListener = null;
    if (gone && !this.answered) gone();
    const { ctx } = this;
    ctx.open.delete(this.socket);
    ctx.intake.release(this);
    if (this.used > 0 && this.read > this.used) {
      // The sidecar sends one request per connection; a second one here would otherwise vanish unseen.
      ctx.log.warn(
        { bytes: this.read - this.used },
        'client sent more after its request (a second request?); one request per connection: ignored',
      );
    }
  }

  readTimedOut(): void {
    const { received, expected } = this.decoder.progress();
    this.finished();
    this.fail(
      wireError.connection(
        `no complete request within ASYA_READ_TIMEOUT=${this.ctx.readTimeoutMs / 1000}s ` +
          `(received ${received} of ${expected ?? 'at least 4'} bytes)`,
      ),
    );
  }

  private frame(frame: Buffer): void {
    if (this.complete) return;
    this.used = 4 + frame.length;
    this.finished();
    this.ctx.intake.hold(this, frame.length, false);
    this.ctx.onFrame(frame, this);
  }

  private finished(): void {
    this.complete = true;
    this.stopClock();
  }

  private fail(err: WireError): void {
    this.ctx.log.warn({ error: err.code }, err.message);
    this.ctx.onRefused(err.code);
    this.respond(errorResponse(err));
  }

  private stopClock(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.deadline = null;
  }

  private armReadTimeout(): void {
    this.stopClock();
    this.deadline = this.after(() => this.readTimedOut());
  }

  /** ASYA_READ_TIMEOUT from now; the connection, not its timer, keeps the runtime alive. */
  private after(expire: () => void): NodeJS.Timeout {
    const timer = setTimeout(expire, this.ctx.readTimeoutMs);
    timer.unref();
    return timer;
  }
}

// The listeners every connection shares: `this` is the socket.
function onData(this: TaggedSocket, chunk: Buffer): void {
  this[CONNECTION]?.data(chunk);
}

function onEnd(this: TaggedSocket): void {
  this[CONNECTION]?.end();
}

function onClose(this: TaggedSocket): void {
  this[CONNECTION]?.closed();
}

function closeSocket(this: net.Socket): void {
  this.destroy();
}

function ignore(): void {}

/**
 * Tell a client that closed its connection from one that only shut down its sending side
 * (shutdown(SHUT_WR), which Go's sidecar may do, and which still waits for the answer): Node reports
 * both as 'end'. On a Linux AF_UNIX stream socket a full close by the peer marks our socket
 * SHUTDOWN_MASK, so a send fails with EPIPE; a peer's SHUT_WR only marks our receive side. Node
 * passes a zero-length write to the kernel (strace: `write(fd, NULL, 0) = -1 EPIPE`), which sends
 * nothing to a client that is still there. The EPIPE arrives as an 'error' and destroys the socket,
 * which is what `clientGone()` reads. Elsewhere (no SHUTDOWN_MASK semantics) the write succeeds and
 * the message runs: never drop an answer a client may be waiting for.
 */
function probeClientGone(socket: net.Socket): void {
  if (!socket.destroyed && socket.writable) socket.write(Buffer.alloc(0));
}
