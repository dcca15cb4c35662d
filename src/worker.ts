/**
 * One Python shim process: spawn, handshake, one call at a time, and how it ended.
 *
 * The channel is the shim's stdin/stdout: 4-byte length + MessagePack per message. What the
 * handler prints arrives on stderr and on a separate pipe (fd 3, the handler's stdout) and is
 * logged line by line. Restart policy lives in the supervisor; a worker only reports its death.
 */
import { execa } from 'execa';
import { Packr, Unpackr } from 'msgpackr';
import type { Readable, Writable } from 'node:stream';
import type { HandlerMode, JsonCodec } from './config.js';
import type { EnvelopeOutput } from './envelope.js';
import { FrameDecoder, lengthPrefix } from './framing.js';
import { LineSplitter, type Logger } from './logger.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** No single shim message may claim more than this (a corrupted channel, not a real result). */
const CHANNEL_FRAME_LIMIT = 2 ** 32 - 1;
const STDERR_TAIL_LINES = 40;

export interface WorkerOptions {
  python: string;
  /** Interpreter arguments that start the shim (see shim.ts). */
  shimArgs: string[];
  handler: string;
  mode: HandlerMode;
  jsonCodec: JsonCodec;
  /** Directories put in front of sys.path (the CLI's `call` adds the working directory). */
  extraPath?: string[];
  log: Logger;
}

export interface ReadyInfo {
  kind: 'function' | 'class';
  python: string;
  executable: string;
  pid: number;
  load_ms: number;
  codec?: string;
}

export interface CallRequest {
  /** Raw JSON bytes of the payload. */
  payload: Buffer;
  /** Raw JSON bytes of the rest of the envelope, when the handler is to see it. */
  meta?: Buffer;
  /** The payload holds integers beyond 64 bits: the shim must decode it with the stdlib (orjson would round them). */
  wideIntegers?: boolean;
}

export type CallOutcome =
  | { kind: 'payloads'; payloads: Buffer[] }
  | { kind: 'envelopes'; outputs: EnvelopeOutput[] }
  /** The handler raised, or its result could not be encoded. */
  | { kind: 'raised'; type: string; message: string; traceback: string }
  /** The payload (or envelope) bytes are not valid JSON for Python. */
  | { kind: 'bad_input'; type: string; message: string };

interface ErrorFields {
  type: string;
  message: string;
  traceback: string;
}

type ShimMessage =
  | ({ t: 'ready' } & ReadyInfo)
  | ({ t: 'fatal' } & ErrorFields)
  | ({ t: 'err' } & ErrorFields)
  | ({ t: 'bad' } & ErrorFields)
  | { t: 'ok'; o: Buffer[] }
  | { t: 'env'; o: EnvelopeOutput[] };

export type DeathReason = 'crash' | 'timeout' | 'stopped';

/** How a worker ended. Rejects every call that was waiting on it. */
export class WorkerDied extends Error {
  constructor(
    readonly reason: DeathReason,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
  ) {
    super(
      `Python process ${signal ? `was killed by ${signal}` : `exited with code ${exitCode}`}` +
        (reason === 'timeout' ? ' after the handler time limit' : ''),
    );
    this.name = 'WorkerDied';
  }
}

/** The shim started but could not load the handler. */
export class HandlerLoadFailed extends Error {
  constructor(
    message: string,
    readonly type: string,
    readonly traceback: string,
  ) {
    super(message);
    this.name = 'HandlerLoadFailed';
  }
}

interface Waiter {
  resolve: (msg: ShimMessage) => void;
  reject: (err: WorkerDied) => void;
}

export class PythonWorker {
  readonly pid: number | undefined;
  /** Resolves when the process is gone, with how it ended. */
  readonly exited: Promise<WorkerDied>;
  private readonly stdin: Writable;
  private waiter: Waiter | null = null;
  private death: WorkerDied | null = null;
  private pendingReason: DeathReason | null = null;
  private readonly stderrTail: string[] = [];
  private readonly kill: (signal: NodeJS.Signals) => void;

  private constructor(private readonly opts: WorkerOptions) {
    const child = execa(opts.python, opts.shimArgs, {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      buffer: false,
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
      cleanup: true,
      env: shimEnvironment(process.env),
      extendEnv: false,
    });
    child.catch(() => undefined); // outcome is read from the exit event below
    this.pid = child.pid;
    this.kill = (signal) => void child.kill(signal);
    this.stdin = child.stdin;
    this.stdin.on('error', () => undefined); // EPIPE when the shim dies; the exit event reports it

    const log = opts.log;
    const decoder = new FrameDecoder(CHANNEL_FRAME_LIMIT);
    const stdout = child.stdout as Readable;
    stdout.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk, (frame) => this.deliver(unpackr.unpack(frame) as ShimMessage));
      } catch (err) {
        log.error({ err }, 'corrupted channel from the Python process; restarting it');
        this.kill('SIGKILL');
      }
    });
    const stdoutEnded = new Promise<void>((resolve) => stdout.once('close', resolve));
    this.pipeLines(child.stderr as Readable, 'stderr');
    this.pipeLines(child.stdio[3] as Readable, 'stdout');

    this.exited = new Promise<WorkerDied>((resolve) => {
      const finish = (code: number | null, signal: string | null) => {
        if (this.death) return;
        // The last reply may still be in the pipe when 'exit' fires: let stdout drain first.
        void Promise.race([stdoutEnded, new Promise((r) => setTimeout(r, 250))]).then(() => {
          const death = new WorkerDied(this.pendingReason ?? 'crash', code, signal, this.stderrTail.join('\n'));
          this.death = death;
          const waiter = this.waiter;
          this.waiter = null;
          waiter?.reject(death);
          resolve(death);
        });
      };
      child.on('exit', finish);
      child.on('error', (err) => {
        this.stderrTail.push(String(err.message));
        finish(null, null);
      });
    });
  }

  /** Spawn the shim. Call `handshake()` next. */
  static spawn(opts: WorkerOptions): PythonWorker {
    return new PythonWorker(opts);
  }

  /**
   * Load the handler. Resolves once it is ready (a class's `__init__` may take minutes);
   * rejects with HandlerLoadFailed or WorkerDied.
   */
  async handshake(): Promise<ReadyInfo> {
    const opts = this.opts;
    const reply = this.next();
    this.send({ t: 'init', handler: opts.handler, mode: opts.mode, codec: opts.jsonCodec, path: opts.extraPath ?? [] });
    const msg = await reply;
    if (msg.t === 'ready') return msg;
    await this.stop(1000);
    if (msg.t === 'fatal') throw new HandlerLoadFailed(msg.message, msg.type, msg.traceback);
    throw new HandlerLoadFailed(`unexpected first message '${msg.t}' from the shim`, 'ProtocolError', '');
  }

  get alive(): boolean {
    return this.death === null;
  }

  /** Run the handler on one message. Rejects with WorkerDied if the process dies or overruns. */
  async call(request: CallRequest, timeoutMs: number | null): Promise<CallOutcome> {
    const reply = this.next();
    const chunks = encodeCall(request);
    if (chunks.length === 1) {
      this.stdin.write(chunks[0]); // the common small message: one write
    } else {
      this.stdin.cork();
      for (const chunk of chunks) this.stdin.write(chunk);
      this.stdin.uncork();
    }
    const timer =
      timeoutMs === null
        ? null
        : setTimeout(() => {
            this.pendingReason = 'timeout';
            this.kill('SIGKILL');
          }, timeoutMs);
    try {
      return toOutcome(await reply);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /** Close the channel so the shim exits on its own; kill it if it has not after `graceMs`. */
  async stop(graceMs: number): Promise<WorkerDied> {
    if (this.death) return this.death;
    this.pendingReason ??= 'stopped';
    this.stdin.end();
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const death = await this.exited;
    clearTimeout(timer);
    return death;
  }

  /** Kill at once (used by the supervisor when it gives up on a message). */
  terminate(reason: DeathReason): void {
    this.pendingReason ??= reason;
    this.kill('SIGKILL');
  }

  private next(): Promise<ShimMessage> {
    if (this.death) return Promise.reject(this.death);
    if (this.waiter) return Promise.reject(new Error('PythonWorker: a call is already in flight'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private send(message: Record<string, unknown>): void {
    const body = packr.pack(message);
    this.stdin.write(lengthPrefix(body.length));
    this.stdin.write(body);
  }

  private deliver(msg: ShimMessage): void {
    const waiter = this.waiter;
    if (!waiter) {
      this.opts.log.error({ type: msg.t }, 'unexpected message from the Python process; restarting it');
      this.kill('SIGKILL');
      return;
    }
    this.waiter = null;
    waiter.resolve(msg);
  }

  private pipeLines(stream: Readable, name: 'stdout' | 'stderr'): void {
    const log = this.opts.log;
    const lines = new LineSplitter((line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      log.info({ src: 'handler', stream: name, python_pid: this.pid }, line);
    });
    stream.on('data', (chunk: Buffer) => lines.push(chunk));
    stream.on('end', () => lines.flush());
    stream.on('error', () => undefined);
  }
}

/**
 * glibc returns freed blocks above 128 KiB to the kernel at once, so every large message costs the
 * shim fresh pages; first-touch faults dominated large-message latency in the benchmark (on its VM
 * they cost as much as parsing the JSON). Keeping such blocks in the heap lets the next message reuse
 * them. An operator's own GLIBC_TUNABLES (even empty) wins; musl ignores the variable.
 */
const SHIM_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456';

export function shimEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return 'GLIBC_TUNABLES' in env ? env : { ...env, GLIBC_TUNABLES: SHIM_MALLOC_TUNABLES };
}

/** Below this, a call is one buffer (one write); above, chunks, so the payload is never copied. */
const SMALL_CALL = 64 * 1024;

function binHeader(key: string, length: number): Buffer {
  // fixstr key (1 char) + bin32 length
  const head = Buffer.allocUnsafe(7);
  head[0] = 0xa1;
  head[1] = key.charCodeAt(0);
  head[2] = 0xc6;
  head.writeUInt32BE(length, 3);
  return head;
}

/**
 * The hot-path message, `{t: "call", p: <payload bytes>, m?: <meta bytes>, w?: true}`, written as msgpack
 * by hand: msgpackr copies a 10 MB buffer into its own (measured ~27 ms); these chunks reference the
 * request frame.
 */
export function encodeCall({ payload, meta, wideIntegers }: CallRequest): Buffer[] {
  const size = 2 + (meta ? 1 : 0) + (wideIntegers ? 1 : 0);
  const parts = [Buffer.from([0x80 | size, 0xa1, 0x74, 0xa4, 0x63, 0x61, 0x6c, 0x6c]), binHeader('p', payload.length), payload];
  if (meta) parts.push(binHeader('m', meta.length), meta);
  if (wideIntegers) parts.push(WIDE_INTEGERS);
  let length = 0;
  for (const part of parts) length += part.length;
  if (length < SMALL_CALL) return [Buffer.concat([lengthPrefix(length), ...parts], 4 + length)];
  // The prefix and headers in one chunk; payload and meta as they are
  return [Buffer.concat([lengthPrefix(length), parts[0]!, parts[1]!]), ...parts.slice(2)];
}

/** `"w": true` */
const WIDE_INTEGERS = Buffer.from([0xa1, 0x77, 0xc3]);

function toOutcome(msg: ShimMessage): CallOutcome {
  switch (msg.t) {
    case 'ok':
      return { kind: 'payloads', payloads: msg.o };
    case 'env':
      return { kind: 'envelopes', outputs: msg.o.map(([m, p]) => [m, p ?? null]) };
    case 'err':
      return { kind: 'raised', type: msg.type, message: msg.message, traceback: msg.traceback };
    case 'bad':
      return { kind: 'bad_input', type: msg.type, message: msg.message };
    default:
      return { kind: 'raised', type: 'ProtocolError', message: `unexpected reply '${msg.t}' from the shim`, traceback: '' };
  }
}
