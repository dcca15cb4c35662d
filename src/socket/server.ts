/**
 * The Unix socket the sidecar connects to: one connection per message, a length-prefixed JSON
 * frame each way. This module owns transport only: it reads every connection concurrently (so
 * a slow or silent client delays nobody), answers transport failures itself, and hands each
 * complete frame on.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Config } from '../config.js';
import { type ErrorCode, ExitCode, FatalError } from '../errors.js';
import type { Logger } from '../logger.js';
import { Connection, type ConnectionContext, type FrameHandler } from './connection.js';
import { Intake } from './intake.js';

export type { Exchange, FrameHandler } from './connection.js';

/** Kernel accept queue; Linux caps it at net.core.somaxconn. The upstream runtime's 5 drops bursts. */
const LISTEN_BACKLOG = 4096;

/**
 * Descriptors kept free for the runtime itself when connections pile up: a Python restart needs
 * 10 for its pipes (5 socketpairs), plus logs and /proc reads. Without this margin an accept at the fd limit is
 * answered by libuv closing every waiting connection silently (its EMFILE "trick").
 */
const FD_HEADROOM = 32;
/**
 * When the fd budget is checked again (and refusals logged, one line at most per this period) after a
 * refused connection, or while many are open. The limit can change under a running process
 * (`prlimit`): a lower one shows as a failed accept or, with many clients, at the next check; a higher
 * one as connections dropped over the old budget. Nothing runs while a few connections come and go:
 * an idle runtime does not wake up for it.
 */
const FD_CHECK_MS = 1000;
/** From this many open connections on, the budget is checked once a second while they arrive. */
const FD_WATCH_CONNECTIONS = 16;

export class SocketServer {
  /** Told of every request answered here with an error before reaching the handler (metrics). */
  onRefused: ((code: ErrorCode) => void) | null = null;
  /** The socket file this process bound (device and inode), to tell it from a replacement. */
  private identity: { dev: number; ino: number } | null = null;
  private fdTimer: NodeJS.Timeout | null = null;
  private fdLimit: number | null = null;
  /** Connections refused for lack of descriptors since the last log line. */
  private refused = 0;
  /** One descriptor held back, released when accept fails so libuv can accept and shed the queue. */
  private spare: number | null = null;
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  /** The ledger of the bytes requests hold (arriving or waiting for their answer). */
  private readonly intake = new Intake();
  /** What every connection shares. */
  private readonly context: ConnectionContext;
  /** Only the process that bound the path may remove it (another runtime may own it). */
  private bound = false;

  constructor(
    private readonly config: Pick<
      Config,
      'socketPath' | 'socketDir' | 'socketChmod' | 'maxMessageSize' | 'readTimeoutMs'
    >,
    private readonly log: Logger,
    onFrame: FrameHandler,
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      new Connection(socket, this.context);
      // Many connections at once: follow the limit while they last (the sidecar holds one at a time).
      if (this.open.size >= FD_WATCH_CONNECTIONS) this.scheduleDescriptorCheck();
    });
    this.context = {
      maxMessageSize: config.maxMessageSize,
      readTimeoutMs: config.readTimeoutMs,
      log,
      onFrame,
      onRefused: (code) => this.onRefused?.(code),
      intake: this.intake,
      open: this.open,
    };
  }

  async listen(): Promise<void> {
    const { socketPath, socketDir, socketChmod } = this.config;
    makeDirectory(socketDir);
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
    // After listening, the server's only errors are failed accepts (EMFILE/ENFILE once libuv's own
    // spare descriptor is gone): without a listener they would crash the runtime.
    this.server.on('error', (err) => this.acceptFailed(err));
    // Over maxConnections (the fd budget), Node accepts and closes at once: counted and logged.
    this.server.on('drop', () => {
      this.refused++;
      this.scheduleDescriptorCheck();
    });
    try {
      const stat = fs.lstatSync(socketPath);
      this.identity = { dev: stat.dev, ino: stat.ino };
    } catch (err) {
      throw socketFatal(`the socket file ${socketPath} vanished right after it was bound`, err);
    }
    this.watchDescriptors();
    if (socketChmod !== null) {
      try {
        fs.chmodSync(socketPath, socketChmod);
      } catch (err) {
        throw socketFatal(`cannot chmod ${socketPath} to 0o${socketChmod.toString(8)} (ASYA_SOCKET_CHMOD)`, err);
      }
    }
    this.log.info(
      { socket: socketPath, mode: socketChmod === null ? 'unchanged' : `0o${socketChmod.toString(8)}` },
      'listening',
    );
  }

  /** Stop accepting; connections already accepted keep going. */
  stopAccepting(): void {
    this.server.close();
    this.removeSocketFile();
    if (this.fdTimer) clearTimeout(this.fdTimer);
    this.fdTimer = null;
    if (this.spare !== null) fs.closeSync(this.spare);
    this.spare = null;
  }

  removeSocketFile(): void {
    if (!this.bound) return;
    try {
      // A socket someone put there after ours vanished is theirs.
      if (this.socketProblem() === null) fs.rmSync(this.config.socketPath, { force: true });
    } catch {
      // already gone, or a read-only directory: nothing more to do on the way out
    }
  }

  /**
   * Null while the file at the socket path is still the socket this process bound; otherwise what
   * happened to it. Without that file the sidecar cannot connect, however well the rest works.
   */
  socketProblem(): string | null {
    if (!this.identity) return null;
    const { socketPath, socketDir } = this.config;
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        return `cannot check the socket file ${socketPath}: ${(err as Error).message}`;
      const dirGone = !fs.existsSync(socketDir);
      return `the socket file ${socketPath} was removed${dirGone ? ` (its directory ${socketDir} is gone)` : ''}: the sidecar can no longer connect`;
    }
    if (stat.dev !== this.identity.dev || stat.ino !== this.identity.ino) {
      return `the socket file ${socketPath} was replaced by another file: the sidecar can no longer reach this runtime`;
    }
    return null;
  }

  /** Connections still open (reading, waiting for an answer, or flushing one). */
  get connections(): number {
    return this.open.size;
  }

  private watchDescriptors(): void {
    if (!fs.existsSync('/proc/self/limits')) return; // not Linux: no budget, libuv's defaults
    this.checkDescriptors();
  }

  private scheduleDescriptorCheck(): void {
    if (this.fdTimer !== null || !this.bound) return;
    this.fdTimer = setTimeout(() => {
      this.fdTimer = null;
      this.checkDescriptors();
    }, FD_CHECK_MS);
    this.fdTimer.unref();
  }

  /**
   * Log what was refused (one line a second at most) and fit the connection budget to the current
   * limit. While connections are still being refused, or no descriptor could be set aside, it checks
   * again a second later.
   */
  private checkDescriptors(): void {
    const refusing = this.refused > 0;
    if (refusing) {
      this.log.warn(
        { refused: this.refused, open_connections: this.open.size, fd_limit: this.fdLimit },
        `refused ${this.refused} connection(s) in the last second: the runtime is short of file descriptors ` +
          `(limit ${this.fdLimit ?? 'unknown'}, ${this.open.size} connections open); raise the limit (ulimit -n) or find the idle clients`,
      );
      this.refused = 0;
    }
    this.fdLimit = readFdLimit() ?? this.fdLimit;
    if (this.fdLimit === null) return;
    const inUse = countOpenFds() ?? this.fdLimit; // unreadable: no descriptor left to read it with
    const others = inUse - this.open.size;
    this.server.maxConnections = Math.max(1, this.fdLimit - others - FD_HEADROOM);
    if (this.spare === null) {
      try {
        this.spare = fs.openSync('/dev/null', 'r');
      } catch {
        // still exhausted; next round
      }
    }
    if (refusing || this.spare === null) this.scheduleDescriptorCheck();
  }

  private acceptFailed(err: Error): void {
    this.refused++;
    this.scheduleDescriptorCheck();
    // libuv retries the accept at once: free one descriptor and shrink the budget, so it accepts
    // and closes (drops) the waiting connections instead of failing in a loop.
    this.server.maxConnections = Math.max(1, this.open.size);
    if (this.spare !== null) {
      fs.closeSync(this.spare);
      this.spare = null;
    } else if (this.refused === 1) {
      this.log.error({ err: (err as NodeJS.ErrnoException).code }, `accept failed: ${err.message}`);
    }
  }
}

/** The soft RLIMIT_NOFILE, which `prlimit` may change while the runtime runs; null if unreadable. */
function readFdLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] && m[1] !== 'unlimited' ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function countOpenFds(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

/**
 * mkdir -p, one level at a time from the top. Node's recursive mkdir loops forever where mkdir
 * answers ENOENT for a parent that exists (e.g. under /proc), and reports a file in the way as a
 * bare ENOTDIR/EEXIST.
 */
function makeDirectory(dir: string): void {
  const fail = (reason: string) => new FatalError(ExitCode.socket, `cannot create socket directory ${dir}: ${reason}`);
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts) {
    current = path.join(current, part);
    let stat: fs.Stats | null = null;
    try {
      stat = fs.statSync(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fail((err as Error).message);
    }
    if (stat) {
      if (!stat.isDirectory()) throw fail(`${current} exists and is not a directory`);
      continue;
    }
    try {
      fs.mkdirSync(current);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(current, { throwIfNoEntry: false })?.isDirectory()) continue; // created meanwhile
      const where = code === 'ENOENT' ? ` (${path.dirname(current)} does not accept new directories)` : '';
      throw fail(`${(err as Error).message}${where}`);
    }
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
    throw new FatalError(
      ExitCode.socket,
      `socket path ${socketPath} is a directory; remove it or set ASYA_SOCKET_NAME/ASYA_SOCKET_PATH to a free path`,
    );
  }
  if (!stat.isSocket()) {
    throw new FatalError(
      ExitCode.socket,
      `socket path ${socketPath} exists and is not a socket; remove it or choose another path`,
    );
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
