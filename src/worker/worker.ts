/**
 * One Python shim process: spawn, handshake, one call at a time, and how it ended.
 *
 * The channel's messages and their codec are channel.ts. What the handler prints arrives on stderr
 * and on a separate pipe (fd 3, the handler's stdout) and is logged line by line. Restart policy
 * lives in the supervisor; a worker only reports its death.
 *
 * The process spawned is the shim's reaper (see the end of asya_shim.py), in a session of its own;
 * the handler runs in its child. Everything that ends a worker goes through the reaper, which takes
 * the handler's whole process tree with it; fd 4 is its lifeline, closed by the kernel when this
 * process dies however it dies.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { HandlerMode, JsonCodec, LogLevel } from '../config.js';
import { type MessageContext, type MessageLogFields, messageLogFields } from '../envelope/trace.js';
import { LineSplitter, type Logger } from '../logger.js';
import { residentBytes } from '../proc-memory.js';
import { FrameCorrupt, FrameDecoder, totalLength } from '../socket/framing.js';
import {
  type CallOutcome,
  type CallRequest,
  CHANNEL_FRAME_LIMIT,
  decodeMessage,
  encodeCall,
  encodeMessage,
  type MetricUpdate,
  type ReadyInfo,
  SHIM_MESSAGE_HEAD,
  type ShimMessage,
  toOutcome,
} from './channel.js';
import { type DeathReason, HandlerLoadFailed, SPAWN_ERRORS, SpawnFailed, WorkerDied } from './errors.js';
import { outputRecord } from './handler-output.js';
import type { ShimLaunch } from './shim.js';
import {
  type EarlyPython,
  FORK_FD,
  type ForkRole,
  REAPER_GRACE_MS,
  signalProcess,
  spawnShim,
  stopTree,
} from './spawn.js';

export type { CallOutcome, CallRequest, ReadyInfo } from './channel.js';
export { type DeathReason, HandlerLoadFailed, SpawnFailed, WorkerDied } from './errors.js';

const STDERR_TAIL_LINES = 40;
/** Set on a call number sent on the control path: a cancellation (the client left), not an interruption. */
const CANCEL_BIT = 0x80000000;
/** After the process exits, how long its pipes may take to deliver what it wrote last. */
const DRAIN_MS = 250;

export interface WorkerOptions {
  python: string;
  /** How Python starts the shim: its arguments, and what to write to its stdin first (see shim.ts). */
  shim: ShimLaunch;
  handler: string;
  mode: HandlerMode;
  jsonCodec: JsonCodec;
  /** Directories put in front of sys.path (the CLI's `call` adds the working directory). */
  extraPath?: string[];
  /**
   * The terminal (a path such as /dev/pts/3) a breakpoint() in the handler opens pdb on; null (default):
   * none, and breakpoint() fails the message saying so.
   */
  terminal?: string | null;
  /** JSON text of the class handler's constructor keyword arguments (ASYA_HANDLER_ARGS); null: none. */
  handlerArgs: string | null;
  /** Seconds; the shim arms its interruption (the soft time limit) only when set. */
  timeoutSeconds: number | null;
  log: Logger;
  /** The level the handler's Python `logging` records are filtered at (ASYA_LOG_LEVEL). */
  logLevel?: LogLevel;
  /** A shim process started before the configuration was read: the first worker adopts it (spawn.ts). */
  early?: EarlyPython | null;
  /**
   * ASYA_PRELOAD: 'template' loads the handler and forks workers (it never handles a message);
   * `{template}` starts a worker forked from it. null (default): a worker that loads the handler itself.
   */
  fork?: ForkRole;
  /**
   * Started ahead of need (a spare): its start runs at a lower CPU priority (nice 10), so on busy cores
   * the workers serving messages go first.
   */
  background?: boolean;
  /** Where the handler's own metrics (context.metrics) go; unset: the shim checks them and drops them. */
  onMetrics?: (updates: MetricUpdate[]) => void;
  /**
   * A call of several chunks (a large payload) was handed to the pipe whole: Python now decodes it and
   * the supervisor waits, the moment for its own housekeeping (runtime/message-memory.ts).
   */
  onCallWritten?: (bytes: number) => void;
  /** What each handler metric name already is (kind, label names): a new process refuses the same conflicts. */
  metricKinds?: () => Record<string, [string, string[]]>;
}

interface Waiter {
  resolve: (msg: ShimMessage) => void;
  reject: (err: WorkerDied) => void;
}

type Stdio = [Writable, Readable, Readable, Readable, Readable];

/**
 * What the supervisor needs of a worker: the Python process below, or a fake in a unit test. Policy
 * (when to interrupt, kill, recycle, restart) is the supervisor's; a worker only carries it out.
 */
export interface Worker {
  /** Resolves when the process is gone, with how it ended. */
  readonly exited: Promise<WorkerDied>;
  /** Load the handler; rejects with SpawnFailed, HandlerLoadFailed or WorkerDied. */
  handshake(): Promise<ReadyInfo>;
  /** Run the handler on one message; rejects with WorkerDied if the process dies meanwhile. */
  call(request: CallRequest): Promise<CallOutcome>;
  /** The soft time limit: ask for the call in progress to be interrupted inside Python. */
  interrupt(): void;
  /** Its client left: a handler with `context` sees cancelled(), an async one is cancelled (optional). */
  cancel?(): void;
  /** Resident memory of the handler's process in bytes, or null when it cannot be read. */
  rss(): number | null;
  /** Close the channel (the handler's close() runs); kill the tree if it has not exited after `graceMs`. */
  stop(graceMs: number): Promise<WorkerDied>;
  /** Kill at once. */
  terminate(reason: DeathReason): void;
}

export type WorkerFactory = () => Worker;

export class PythonWorker implements Worker {
  /** The reaper's pid (the process spawned). The handler's is in ReadyInfo. */
  readonly pid: number | undefined;
  /** A template's fork-request socket (the supervisor's end): porters are spawned with it as their fd 5. */
  forkRequests: Duplex | null = null;
  /** Resolves when the process is gone, with how it ended. */
  readonly exited: Promise<WorkerDied>;
  private readonly stdio: Stdio | null;
  private waiter: Waiter | null = null;
  private death: WorkerDied | null = null;
  private pendingReason: DeathReason | null = null;
  private readonly stderrTail: string[] = [];
  /** Set when the process could not be created; the handshake reports it. */
  private spawnFailure: Promise<SpawnFailed> | null = null;
  /** The process was started early and has had the shim's source already (spawn.ts). */
  private readonly adopted: boolean = false;
  /** The handler's process, once the shim reported it: its group is the fallback's second target. */
  private shimPid: number | null = null;
  private ready: ReadyInfo | null = null;
  /** Calls sent, counted from 1 as the shim counts them: the number an interruption names. */
  private calls = 0;
  /** Once the exit is seen the pid may be reused: never signal it again. */
  private reaped = false;
  /** Cancels the SIGKILL that follows the SIGTERM of killTree, once the reaper has exited. */
  private cancelKill: (() => void) | null = null;
  /**
   * The message last sent: lines the handler writes carry its id until the next one starts (a line
   * written just before the handler returned may be read after its answer).
   */
  private context: MessageContext | null = null;
  private contextFields: MessageLogFields | null = null;
  /** The call in flight's listener for the debugger opening and closing (CallRequest.onDebugger). */
  private onDebugger: ((open: boolean) => void) | null = null;

  private constructor(private opts: WorkerOptions) {
    const log = opts.log;
    const fork = opts.fork ?? null;
    // The early process may become the template, or serve as a spawned worker; never as a porter.
    let child: ChildProcess | null =
      fork === null || fork === 'template' ? (opts.early?.take(opts.python, opts.shim) ?? null) : null;
    let thrown: NodeJS.ErrnoException | null = null;
    this.adopted = child !== null;
    try {
      child ??= spawnShim(opts.python, opts.shim, fork);
    } catch (err) {
      thrown = err as NodeJS.ErrnoException;
    }
    if (!child || child.pid === undefined) {
      // EMFILE, ENFILE, EAGAIN, ENOENT, EACCES arrive as an 'error' event on the next tick; others throw.
      this.pid = undefined;
      this.stdio = null;
      const failed = new Promise<SpawnFailed>((resolve) => {
        const fail = (err: NodeJS.ErrnoException) =>
          resolve(new SpawnFailed(err.code ?? 'UNKNOWN', opts.python, SPAWN_ERRORS[err.code ?? ''] ?? err.message));
        if (thrown || !child) fail(thrown ?? new Error('spawn returned no process'));
        else child.once('error', fail);
      });
      // After EMFILE, Node has not even set up child.stdio.
      for (const stream of (child?.stdio as Array<Readable | Writable | null> | undefined) ?? []) stream?.destroy();
      this.spawnFailure = failed;
      this.exited = failed.then((err) => {
        const death = new WorkerDied('crash', null, null, err.message);
        this.death = death;
        return death;
      });
      return;
    }
    const proc = child;
    this.pid = proc.pid;
    if (opts.background && proc.pid !== undefined) lowerPriority(proc.pid);
    const stdio = proc.stdio.slice(0, FORK_FD) as unknown as Stdio;
    this.stdio = stdio;
    // The template's end of the fork-request socket: never read (the template never writes on it).
    const requests = (proc.stdio as unknown as Array<Duplex | null>)[FORK_FD] ?? null;
    if (requests) {
      requests.on('error', () => undefined);
      if (fork === 'template') this.forkRequests = requests;
      else requests.destroy(); // the early process's, when it is not the template
    }
    const [stdin, stdout, stderr, handlerOut, lifeline] = stdio;
    stdin.on('error', () => undefined); // EPIPE when the shim dies; the exit event reports it
    lifeline.on('error', () => undefined);

    const decoder = new FrameDecoder(CHANNEL_FRAME_LIMIT, { expect: SHIM_MESSAGE_HEAD });
    stdout.on('data', (chunk: Buffer) => {
      if (this.pendingReason === 'corrupt') return;
      try {
        decoder.push(chunk, (frame) => this.deliver(decodeMessage(frame)));
      } catch (err) {
        const what = err instanceof FrameCorrupt ? err.message : `undecodable message (${(err as Error).message})`;
        this.corrupted(what);
      }
    });
    const closed = (stream: Readable) => new Promise<void>((resolve) => stream.once('close', resolve));
    const drained = Promise.all([closed(stdout), closed(stderr), closed(handlerOut)]);
    this.pipeLines(stderr, 'stderr');
    this.pipeLines(handlerOut, 'stdout');

    this.exited = new Promise<WorkerDied>((resolve) => {
      proc.once('exit', (code, signal) => {
        this.reaped = true;
        this.cancelKill?.();
        // What is left of its group: nothing when the reaper ran (it empties the group before it
        // exits), but an ASYA_PYTHONEXECUTABLE wrapper that dies of SIGTERM without exec'ing leaves
        // its children there (a shell's `sleep 1000` survived every stop).
        if (this.pid !== undefined) signalProcess(-this.pid, 'SIGKILL');
        // The last reply and the last stderr lines may still be in the pipes when 'exit' fires. The
        // reaper killed every process that could hold them, so they close; the bound is for the rest.
        let timer: NodeJS.Timeout | undefined;
        void Promise.race([drained, new Promise((r) => (timer = setTimeout(r, DRAIN_MS)))]).then(() => {
          clearTimeout(timer);
          // Nothing more will be read: release the descriptors, whoever else still holds the other ends.
          for (const stream of stdio) stream.destroy();
          this.forkRequests?.destroy();
          const death = new WorkerDied(this.pendingReason ?? 'crash', code, signal, this.stderrTail.join('\n'));
          this.death = death;
          const waiter = this.waiter;
          this.waiter = null;
          // `exited` first: the supervisor withdraws readiness (onExit) before the call's rejection
          // answers the message, whose connection now closes at once: a client that checks readiness
          // after a worker_crashed answer never finds the ready file of a runtime without Python.
          resolve(death);
          waiter?.reject(death);
        });
      });
      proc.on('error', (err) => log.warn({ err }, 'error from the Python process handle'));
    });
  }

  /** Spawn the shim. Call `handshake()` next (it reports a failure to spawn as SpawnFailed). */
  static spawn(opts: WorkerOptions): PythonWorker {
    return new PythonWorker(opts);
  }

  /**
   * Load the handler. Resolves once it is ready (a class's `__init__` may take minutes);
   * rejects with SpawnFailed, HandlerLoadFailed or WorkerDied.
   */
  async handshake(): Promise<ReadyInfo> {
    if (this.spawnFailure) throw await this.spawnFailure;
    const opts = this.opts;
    const reply = this.next();
    if (opts.shim.preamble && !this.adopted) this.stdio![0].write(opts.shim.preamble);
    this.send({
      t: 'init',
      handler: opts.handler,
      mode: opts.mode,
      codec: opts.jsonCodec,
      path: opts.extraPath ?? [],
      terminal: opts.terminal ?? null,
      args: opts.handlerArgs,
      timeout: opts.timeoutSeconds,
      log_level: opts.logLevel ?? 'info',
      preload: opts.fork === 'template',
      metrics: opts.onMetrics !== undefined,
      metric_kinds: opts.metricKinds?.() ?? {},
    });
    let msg: ShimMessage;
    try {
      msg = await reply;
    } catch (err) {
      throw tooOld(err) ?? err;
    }
    if (msg.t === 'ready') {
      this.shimPid = msg.pid;
      this.ready = msg;
      return msg;
    }
    await this.stop(1000);
    if (msg.t === 'fatal') {
      const { python, executable } = msg;
      const interpreter = python !== undefined && executable !== undefined ? { python, executable } : null;
      throw new HandlerLoadFailed(msg.message, msg.type, msg.traceback, interpreter);
    }
    throw new HandlerLoadFailed(`unexpected first message '${msg.t}' from the shim`, 'ProtocolError', '');
  }

  get alive(): boolean {
    return this.death === null;
  }

  /** Dead, or being killed or stopped: never to be handed a message again. */
  get doomed(): boolean {
    return this.death !== null || this.pendingReason !== null;
  }

  /**
   * Run the handler on one message. Rejects with WorkerDied if the process dies or is killed. Not an
   * async function: the reply resolves the caller's promise directly (one microtask, not three).
   */
  call(request: CallRequest): Promise<CallOutcome> {
    if (this.death) return Promise.reject(this.death);
    if (this.waiter) return Promise.reject(new Error('PythonWorker: a call is already in flight'));
    const reply = new Promise<CallOutcome>((resolve, reject) => {
      this.waiter = { resolve: (msg) => resolve(toOutcome(msg)), reject };
    });
    this.calls++;
    this.context = request.context ?? null;
    this.contextFields = null;
    this.onDebugger = request.onDebugger ?? null;
    const stdin = this.stdio![0];
    const chunks = encodeCall(request);
    if (chunks.length === 1) {
      stdin.write(chunks[0]); // the common small message: one write
    } else {
      const { onCallWritten } = this.opts;
      const last = chunks.length - 1;
      stdin.cork();
      for (let i = 0; i < last; i++) stdin.write(chunks[i]);
      if (onCallWritten) {
        const bytes = totalLength(chunks);
        stdin.write(chunks[last], () => onCallWritten(bytes));
      } else stdin.write(chunks[last]);
      stdin.uncork();
    }
    return reply;
  }

  /**
   * The call's number goes to the reaper over the lifeline (a socket, so it is written both ways); the
   * reaper, the shim's parent, hands it on and signals the shim, which interrupts only that call. The
   * reaper signals only a shim it has not reaped, so a recycled pid is never hit.
   */
  interrupt(): void {
    this.control(this.calls >>> 0);
  }

  /** The same path, the call's number with the top bit set: its client left. */
  cancel(): void {
    this.control((this.calls | CANCEL_BIT) >>> 0);
  }

  private control(word: number): void {
    if (!this.ready?.interruptible || this.death || !this.stdio) return;
    const n = Buffer.allocUnsafe(4);
    n.writeUInt32BE(word);
    (this.stdio[4] as unknown as Writable).write(n);
  }

  /** Resident memory of the handler's process, between messages. */
  rss(): number | null {
    return this.shimPid === null || this.death ? null : residentBytes(this.shimPid);
  }

  /** Close the channel so the shim calls close() and exits on its own; kill its tree if it has not after `graceMs`. */
  async stop(graceMs: number): Promise<WorkerDied> {
    if (this.death) return this.death;
    this.pendingReason ??= 'stopped';
    // What close() prints belongs to no message.
    this.context = null;
    this.contextFields = null;
    const log = this.opts.log;
    const hasClose = this.ready?.close === true;
    if (!this.waiter) {
      // The shim's last word: how its close() went.
      this.waiter = {
        resolve: (msg) => {
          if (msg.t !== 'closed') return;
          if (msg.type)
            log.warn(
              { type: msg.type, traceback: msg.traceback, ms: msg.ms },
              `close() raised ${msg.type}: ${msg.message ?? ''}`,
            );
          else log.info({ ms: msg.ms }, 'close() returned');
        },
        reject: () => undefined,
      };
    }
    this.stdio?.[0].end();
    const timer = setTimeout(() => {
      log.warn(
        { grace_ms: graceMs, python_pid: this.shimPid ?? undefined },
        hasClose
          ? `close() did not return within ${graceMs / 1000} s; killing the Python process`
          : `the Python process did not exit within ${graceMs / 1000} s of being asked to stop; killing it`,
      );
      this.killTree();
    }, graceMs);
    const death = await this.exited;
    clearTimeout(timer);
    return death;
  }

  /** Its lines name another worker from now on (a spare taken by a pool's slot, template.ts). */
  relabel(log: Logger): void {
    this.opts = { ...this.opts, log };
  }

  /** Kill at once (used by the supervisor when it gives up on a message). */
  terminate(reason: DeathReason): void {
    this.pendingReason ??= reason;
    this.killTree();
  }

  /**
   * The reaper kills the shim's group and everything re-parented to it, then exits. Should it not
   * (stopped, or starved of CPU), both groups are SIGKILLed: the shim dies with the reaper (its
   * parent-death signal), though processes the handler moved to other groups may then survive.
   */
  private killTree(): void {
    if (this.reaped || this.cancelKill || this.pid === undefined) return;
    const pid = this.pid;
    this.cancelKill = stopTree(
      pid,
      () => [pid, this.shimPid],
      () =>
        this.opts.log.warn(
          { pid, grace_ms: REAPER_GRACE_MS },
          'the Python process did not stop on SIGTERM; killing its process groups',
        ),
    );
  }

  private corrupted(what: string): void {
    this.opts.log.error(
      { python_pid: this.shimPid ?? undefined },
      `corrupted channel from the Python process (${what}); restarting it`,
    );
    this.stderrTail.push(`asya-runtime: corrupted channel: ${what}`);
    this.pendingReason = 'corrupt';
    this.killTree();
  }

  private next(): Promise<ShimMessage> {
    if (this.death) return Promise.reject(this.death);
    if (this.waiter) return Promise.reject(new Error('PythonWorker: a call is already in flight'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private send(message: Record<string, unknown>): void {
    const stdin = this.stdio![0];
    for (const chunk of encodeMessage(message)) stdin.write(chunk);
  }

  private deliver(msg: ShimMessage): void {
    // Not a reply: the handler's breakpoint() opened or closed the debugger during the call.
    if (msg.t === 'debugger') return void this.onDebugger?.(msg.open);
    const waiter = this.waiter;
    if (!waiter) {
      this.corrupted(`a '${String(msg.t)}' message when none was expected`);
      return;
    }
    this.waiter = null;
    this.onDebugger = null;
    const updates = (msg as { x?: MetricUpdate[] }).x;
    if (updates !== undefined) this.opts.onMetrics?.(updates);
    waiter.resolve(msg);
  }

  /**
   * The pid of the process that runs the handler, for a line it wrote. Before its ready message says so
   * (a line printed while the module loads), it is the reaper's child, read once from /proc; the
   * reaper's own pid where that cannot be read.
   */
  private pythonPid(): number | undefined {
    if (this.shimPid !== null || this.pid === undefined) return this.shimPid ?? this.pid;
    if (this.loadingPid === null) {
      try {
        const first = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'latin1').split(' ')[0];
        if (first) this.loadingPid = Number(first);
      } catch {
        // not Linux, or gone: the reaper's pid stands in
      }
    }
    return this.loadingPid ?? this.pid;
  }

  /** The handler's process as /proc showed it while loading (null: not known yet). */
  private loadingPid: number | null = null;

  /** `{id, trace_id}` of the message in flight, computed once per message and only when a line needs it. */
  private messageFields(): MessageLogFields | undefined {
    if (this.context === null) return undefined;
    this.contextFields ??= messageLogFields(this.context);
    return this.contextFields;
  }

  /** Each line the handler writes (or record the shim sends, see handler-output.ts) is logged. */
  private pipeLines(stream: Readable, name: 'stdout' | 'stderr'): void {
    const lines = new LineSplitter((line) => {
      const record = outputRecord(name, line);
      this.stderrTail.push(record.tail);
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      this.opts.log[record.level](
        {
          src: 'handler',
          ...record.fields,
          python_pid: this.pythonPid(),
          ...(record.id === undefined ? this.messageFields() : { id: record.id }),
        },
        record.msg,
      );
    });
    stream.on('data', (chunk: Buffer) => lines.push(chunk));
    stream.on('end', () => lines.flush());
    stream.on('error', () => undefined);
  }
}

/** Nice 10 for a process started ahead of need; where that is refused it just runs at the usual priority. */
function lowerPriority(pid: number): void {
  try {
    setPriority(pid, 10);
  } catch {
    // not permitted, or already gone
  }
}

/**
 * A Python too old to start the shim at all (Python 2 refuses `-X faulthandler`; one before 3.7 may not
 * parse the shim) dies before its first word: said as the shim says it for 3.6 (toFatal names the interpreter).
 */
function tooOld(err: unknown): HandlerLoadFailed | null {
  if (!(err instanceof WorkerDied) || err.exitCode === null) return null;
  const refused = /-X is reserved for implementation-specific arguments|SyntaxError/.exec(err.stderrTail);
  if (!refused) return null;
  return new HandlerLoadFailed(
    `this Python is too old: the runtime needs 3.7 or newer (it could not start the shim: ${refused[0]})`,
    'UnsupportedPython',
    '',
  );
}
