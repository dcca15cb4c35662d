/**
 * The Unix socket the sidecar connects to: one connection per message, a length-prefixed JSON
 * frame each way. This module owns transport only: it reads every connection concurrently (so
 * a slow or silent client delays nobody), answers transport failures itself, and hands each
 * complete frame on.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Config } from './config.js';
import { errorResponse } from './envelope.js';
import { ExitCode, FatalError, type WireError, wireError } from './errors.js';
import { FrameDecoder, FrameTooLarge } from './framing.js';
import type { Logger } from './logger.js';
import { ReadBudget, type Reader } from './read-budget.js';
import type { Exchange } from './supervisor.js';

export type FrameHandler = (frame: Buffer, exchange: Exchange) => void;

/** Kernel accept queue; Linux caps it at net.core.somaxconn. The upstream runtime's 5 drops bursts. */
const LISTEN_BACKLOG = 4096;

export class SocketServer {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private readonly budget = new ReadBudget();
  /** Only the process that bound the path may remove it (another runtime may own it). */
  private bound = false;

  constructor(
    private readonly config: Pick<Config, 'socketPath' | 'socketDir' | 'socketChmod' | 'maxMessageSize' | 'readTimeoutMs'>,
    private readonly log: Logger,
    private readonly onFrame: FrameHandler,
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  async listen(): Promise<void> {
    const { socketPath, socketDir, socketChmod } = this.config;
    try {
      fs.mkdirSync(socketDir, { recursive: true });
    } catch (err) {
      throw socketFatal(`cannot create socket directory ${socketDir}`, err);
    }
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ path: socketPath, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', reject);
        this.bound = true;
        resolve();
      });
    }).catch((err: unknown) => {
      throw socketFatal(`cannot listen on ${socketPath}`, err);
    });
    if (socketChmod !== null) {
      try {
        fs.chmodSync(socketPath, socketChmod);
      } catch (err) {
        throw socketFatal(`cannot chmod ${socketPath} to 0o${socketChmod.toString(8)} (ASYA_SOCKET_CHMOD)`, err);
      }
    }
    this.log.info({ socket: socketPath, mode: socketChmod === null ? 'unchanged' : `0o${socketChmod.toString(8)}` }, 'listening');
  }

  /** Stop accepting; connections already accepted keep going. */
  stopAccepting(): void {
    this.server.close();
    this.removeSocketFile();
  }

  removeSocketFile(): void {
    if (!this.bound) return;
    try {
      if (fs.lstatSync(this.config.socketPath).isSocket()) fs.rmSync(this.config.socketPath, { force: true });
    } catch {
      // already gone
    }
  }

  /** Connections still open (reading, waiting for an answer, or flushing one). */
  get connections(): number {
    return this.open.size;
  }

  private accept(socket: net.Socket): void {
    this.open.add(socket);
    socket.on('close', () => this.open.delete(socket));
    socket.on('error', () => undefined); // a vanished client is not the runtime's problem
    const decoder = new FrameDecoder(this.config.maxMessageSize);
    const budget = this.budget;
    /** Request bytes this connection holds in the budget: while receiving, then once complete. */
    let receivedBytes = 0;
    let heldBytes = 0;
    let receiving = true;
    const settle = (frameBytes: number) => {
      if (!receiving) return;
      receiving = false;
      heldBytes = frameBytes;
      budget.completed(reader, frameBytes, receivedBytes);
    };
    const release = () => {
      settle(0);
      const bytes = heldBytes;
      heldBytes = 0;
      if (bytes > 0) budget.released(bytes);
    };
    let answered = false;
    const exchange: Exchange = {
      respond: (chunks) => {
        if (answered) return;
        answered = true;
        release();
        if (socket.destroyed) return;
        socket.cork();
        for (const chunk of chunks) socket.write(chunk);
        socket.uncork();
        // With allowHalfOpen, Node closes the socket once the client has read and closed its side.
        // A client that never does is reaped (waiting for end → destroy instead costs ~0.15 ms a message).
        socket.end();
        socket.setTimeout(this.config.readTimeoutMs, () => socket.destroy());
      },
      abort: () => {
        answered = true;
        release();
        socket.destroy();
      },
      // Destroyed: closed by us, or the end-of-request probe below hit EPIPE.
      clientGone: () => socket.destroyed,
    };
    const fail = (err: WireError) => {
      this.log.warn({ error: err.code }, err.message);
      exchange.respond(errorResponse(err));
    };
    let complete = false;
    let timer: NodeJS.Timeout | undefined;
    const armReadTimeout = () => {
      timer = setTimeout(() => {
        const { received, expected } = decoder.progress();
        fail(
          wireError.connection(
            `no complete request within ASYA_READ_TIMEOUT=${this.config.readTimeoutMs / 1000}s ` +
              `(received ${received} of ${expected ?? 'at least 4'} bytes)`,
          ),
        );
      }, this.config.readTimeoutMs);
    };
    armReadTimeout();
    // Paused by the read budget: the delay is ours, so the client's read timeout starts again after it.
    const reader: Reader = {
      pause: () => {
        socket.pause();
        clearTimeout(timer);
      },
      resume: () => {
        socket.resume();
        if (!complete) armReadTimeout();
      },
    };
    budget.join(reader);
    socket.on('data', (chunk: Buffer) => {
      if (complete) return; // one request per connection; anything after it is ignored
      receivedBytes += chunk.length;
      budget.received(chunk.length);
      try {
        decoder.push(chunk, (frame) => {
          if (complete) return;
          complete = true;
          clearTimeout(timer);
          settle(frame.length);
          this.onFrame(frame, exchange);
        });
      } catch (err) {
        if (!(err instanceof FrameTooLarge)) throw err;
        complete = true;
        clearTimeout(timer);
        fail(wireError.tooLarge(err.size, err.limit));
      }
    });
    socket.on('end', () => {
      if (complete) {
        if (!answered) probeClientGone(socket);
        return;
      }
      complete = true;
      clearTimeout(timer);
      const { received, expected } = decoder.progress();
      fail(
        wireError.connection(
          received === 0 && expected === null
            ? 'client closed the connection without sending a request'
            : `client closed the connection mid-frame (received ${received} of ${expected ?? 'at least 4'} bytes)`,
        ),
      );
    });
    socket.on('close', () => {
      clearTimeout(timer);
      release();
    });
  }
}

/**
 * Tell a client that closed its connection from one that only shut down its sending side
 * (shutdown(SHUT_WR), which Go's sidecar may do, and which still waits for the answer): Node reports
 * both as 'end'. On a Linux AF_UNIX stream socket a full close by the peer marks our socket
 * SHUTDOWN_MASK, so a send fails with EPIPE; a peer's SHUT_WR only marks our receive side. Node
 * passes a zero-length write to the kernel (strace: `write(fd, NULL, 0) = -1 EPIPE`), which sends
 * nothing to a client that is still there. The EPIPE arrives as an 'error' and destroys the socket,
 * which is what `clientGone()` reads. Elsewhere (no SHUTDOWN_MASK semantics) the write succeeds and
 * the message runs as before: never drop an answer a client may be waiting for.
 */
function probeClientGone(socket: net.Socket): void {
  if (!socket.destroyed && socket.writable) socket.write(Buffer.alloc(0));
}

function socketFatal(what: string, err: unknown): FatalError {
  return new FatalError(ExitCode.socket, `${what}: ${(err as Error).message}`);
}

/** A socket file nobody listens on is left over from an earlier run: remove it. Anything else stays. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (stat.isDirectory()) {
    throw new FatalError(ExitCode.socket, `socket path ${socketPath} is a directory; remove it or set ASYA_SOCKET_NAME/ASYA_SOCKET_PATH to a free path`);
  }
  if (!stat.isSocket()) {
    throw new FatalError(ExitCode.socket, `socket path ${socketPath} exists and is not a socket; remove it or choose another path`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new FatalError(ExitCode.socket, `another process is already listening on ${socketPath}`);
  fs.rmSync(socketPath, { force: true });
}
