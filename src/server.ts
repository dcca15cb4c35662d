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
import { PendingBytes, pendingLimit } from './pending-bytes.js';
import type { Exchange } from './supervisor.js';

export type FrameHandler = (frame: Buffer, exchange: Exchange) => void;

/** Kernel accept queue; Linux caps it at net.core.somaxconn. The upstream runtime's 5 drops bursts. */
const LISTEN_BACKLOG = 4096;

export class SocketServer {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  /** Bytes held for requests still arriving, across all connections. */
  private readonly pending: PendingBytes<net.Socket>;
  /** How each connection is failed, for when the pending bound refuses it. */
  private readonly refuse = new WeakMap<net.Socket, () => void>();
  /** Only the process that bound the path may remove it (another runtime may own it). */
  private bound = false;

  constructor(
    private readonly config: Pick<Config, 'socketPath' | 'socketDir' | 'socketChmod' | 'maxMessageSize' | 'readTimeoutMs'>,
    private readonly log: Logger,
    private readonly onFrame: FrameHandler,
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.pending = new PendingBytes(pendingLimit(config.maxMessageSize));
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
    let answered = false;
    const exchange: Exchange = {
      respond: (chunks) => {
        if (answered) return;
        answered = true;
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
        socket.destroy();
      },
    };
    const fail = (err: WireError) => {
      this.log.warn({ error: err.code }, err.message);
      exchange.respond(errorResponse(err));
    };
    let complete = false;
    const finished = () => {
      complete = true;
      clearTimeout(timer);
      this.pending.release(socket);
    };
    const timer = setTimeout(() => {
      const { received, expected } = decoder.progress();
      finished();
      fail(
        wireError.connection(
          `no complete request within ASYA_READ_TIMEOUT=${this.config.readTimeoutMs / 1000}s ` +
            `(received ${received} of ${expected ?? 'at least 4'} bytes)`,
        ),
      );
    }, this.config.readTimeoutMs);
    this.refuse.set(socket, () => {
      const { received, expected } = decoder.progress();
      finished();
      fail(
        wireError.connection(
          `refused: requests still arriving hold ${this.pending.bytes} bytes across ${this.pending.holders + 1} connections, ` +
            `over the runtime's bound of ${this.pending.limit}; this connection was the newest (received ${received} of ${expected} bytes)`,
        ),
      );
    });
    // Bytes read on this connection, and how many of them the request was: the rest is logged at close.
    let read = 0;
    let used = 0;
    socket.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (complete) return;
      try {
        decoder.push(chunk, (frame) => {
          if (complete) return;
          used = 4 + frame.length;
          finished();
          this.onFrame(frame, exchange);
        });
      } catch (err) {
        if (!(err instanceof FrameTooLarge)) throw err;
        finished();
        fail(wireError.tooLarge(err.size, err.limit));
        return;
      }
      if (!complete) for (const refused of this.pending.set(socket, decoder.held)) this.refuse.get(refused)?.();
    });
    socket.on('end', () => {
      if (complete) return;
      const { received, expected } = decoder.progress();
      finished();
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
      this.pending.release(socket);
      if (used > 0 && read > used) {
        // The sidecar sends one request per connection; a second one here would otherwise vanish unseen.
        this.log.warn({ bytes: read - used }, 'client sent more after its request (a second request?); one request per connection: ignored');
      }
    });
  }
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
