/**
 * The supervisor: one Python worker's lifecycle, one message at a time (handlers are not thread-safe
 * by contract). It runs the message the pool hands it (pool.ts owns the queue and the dispatch) and
 * says when it is free for the next. A dead worker's in-flight message is answered, the worker is
 * restarted with backoff, and readiness follows. An overrunning call is interrupted, then killed; a
 * worker past its recycle thresholds is replaced between messages. The thresholds are data
 * (policy.ts); the worker comes from a factory.
 */
import type { Config } from '../config.js';
import { deadlineOf } from '../envelope/deadline.js';
import { handlerMeta } from '../envelope/envelope.js';
import { messageLogFields, traceIdOf } from '../envelope/trace.js';
import { ExitCode, FatalError } from '../errors.js';
import { batched, type Logger } from '../logger.js';
import {
  type Answer,
  type AnswerContext,
  answerFromDeath,
  answerFromOutcome,
  answerPastDeadline,
  type MessageOutcome,
} from './answer.js';
import { type DeathReason, SpawnFailed, toFatal, WorkerDied } from './errors.js';
import type { Job } from './job-queue.js';
import { type RecycleReason, recycleReason, restartDelay, spawnRetryDelay, type WorkerPolicy } from './policy.js';
import { TimeLimit } from './time-limit.js';
import type { CallOutcome, CallRequest, ReadyInfo, Worker, WorkerFactory } from './worker.js';

export type { MessageOutcome } from './answer.js';

/**
 * What the supervisor reports as it works, for whoever observes it (the runtime's metrics). Every
 * member is optional, and with no observer nothing is measured.
 */
export interface SupervisorEvents {
  /** A message was answered; `seconds` is the time Python spent on it (call to answer). */
  message?(outcome: MessageOutcome, seconds: number): void;
  /** A Python process died while serving and is being replaced. */
  restart?(reason: DeathReason): void;
  /** A Python process loaded the handler (first start and every restart). */
  loaded?(ready: ReadyInfo): void;
}

export type { Job } from './job-queue.js';

/** The supervisor's place in its pool. */
export interface Slot {
  /** 1-based, in every log line of this worker's supervisor; null: a runtime with one worker (lines unchanged). */
  index: number | null;
  /**
   * Whether recycling may start now. In a pool, only while every other worker serves: workers that
   * start together and share the load reach ASYA_WORKER_MAX_MESSAGES (or a memory threshold)
   * together, and recycling them at once withdrew readiness for a whole reload at every cycle.
   * Deferred, the check runs again after the next message.
   */
  mayRecycle?: () => boolean;
}

/** A worker stopped on purpose has at least this long to run close() and exit. */
const MIN_STOP_GRACE_MS = 2000;

type State = 'starting' | 'ready' | 'restarting' | 'stopping';

export class Supervisor {
  private state: State = 'starting';
  /** The current Python process, from spawn on (it may still be in __init__). */
  private worker: Worker | null = null;
  /** The same process once its handler is loaded: the only one calls go to. */
  private active: Worker | null = null;
  /** Workers being replaced, until they have exited: never two loaded interpreters at once, unless they share one model (policy.replaceBeforeExit). */
  private readonly retiring = new Map<Worker, Promise<unknown>>();
  /** What the active worker has done since it was loaded, for the recycle rule. */
  private messages = 0;
  private memoryErrors = 0;
  /** Lines about this worker; in a pool they name it (worker number, and the pid once loaded). */
  private log: Logger;
  private inFlight: Job | null = null;
  /** Settles when the message in flight has been answered (reload waits for it). */
  private running: Promise<void> | null = null;
  /** Stopping, but finishing what the pool still hands out (the worker was serving when shutdown began). */
  private draining = false;
  /** Deaths and failed inits since the last successful call. */
  private streak = 0;
  /** The once-per-load notices (Answer.notice) the active worker's answers have logged. */
  private noticed = new Set<string>();

  constructor(
    private readonly config: Config,
    private readonly policy: WorkerPolicy,
    private readonly createWorker: WorkerFactory,
    private readonly baseLog: Logger,
    private readonly hooks: {
      /** Readiness follows the worker: false while it is restarting. */
      onReady: (ready: boolean) => void;
      /** The worker cannot be brought back; the runtime must exit. */
      onFatal: (err: FatalError) => void;
      /** The worker may take a message now (see `free`): loaded, or done with the last one. */
      onFree: () => void;
      /** Whether messages are waiting for a worker. */
      waiting: () => boolean;
    },
    private readonly events: SupervisorEvents | null = null,
    /** One INFO line per answered message (id, duration, outcome, outputs); DEBUG otherwise. */
    private readonly logEachMessage = true,
    private readonly slot: Slot | null = null,
  ) {
    this.log = slot?.index ? baseLog.child({ worker: slot.index }) : baseLog;
  }

  /** The pid of the Python process that runs the handler, once loaded. */
  get pythonPid(): number | null {
    return this.activePid;
  }

  /** What the Python process now serving reported when it loaded the handler; null while there is none. */
  get loaded(): ReadyInfo | null {
    return this.active ? this.loadedInfo : null;
  }

  private loadedInfo: ReadyInfo | null = null;

  private activePid: number | null = null;

  /** First start: a handler that cannot load is fatal at once (never serve a broken handler). */
  async start(): Promise<ReadyInfo> {
    try {
      const ready = await this.spawn();
      this.setState('ready');
      this.hooks.onFree(); // messages may have queued up during a long __init__
      return ready;
    } catch (err) {
      throw toFatal(err, this.config);
    }
  }

  get busy(): boolean {
    return this.inFlight !== null;
  }

  /** Whether its worker has the handler loaded and takes messages (not starting, restarting or stopping). */
  get serving(): boolean {
    return this.state === 'ready' && this.active !== null;
  }

  /** Whether it would take a message now: serving (or draining) and not busy. */
  get free(): boolean {
    const taking = this.state === 'ready' || (this.state === 'stopping' && this.draining);
    return taking && this.inFlight === null && this.active !== null;
  }

  /**
   * Shutdown's first half: take no new work. Resolves with whether the worker was serving; if so it
   * goes on taking what the pool hands it (the queue and the message in flight, until the pool's
   * grace period ends), since the sidecar is waiting for those answers.
   */
  stopTaking(): boolean {
    const wasReady = this.state === 'ready';
    this.draining = wasReady;
    this.setState('stopping');
    return wasReady;
  }

  /** Shutdown's second half: stop the worker; close() has `graceMs` (what is left of the grace period). */
  async close(wasReady: boolean, graceMs: number): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.active = null;
    if (worker) {
      // In flight past the grace period, or still in __init__: nothing to wait for.
      if (this.inFlight || !wasReady) worker.terminate('stopped');
      // At least 2 s, as the stop always had.
      await worker.stop(Math.max(graceMs, MIN_STOP_GRACE_MS));
    }
    if (this.retiring.size > 0) {
      // A process still retiring (a reload's close() running) gets no more of the grace period than
      // the current one did: a shutdown (Ctrl-C under `call --watch`) does not wait out its own timeout.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(graceMs, MIN_STOP_GRACE_MS))));
      await Promise.race([this.retired(), late]);
      clearTimeout(timer);
      for (const old of this.retiring.keys()) old.terminate('stopped');
      await this.retired();
    }
  }

  /** A method, not a field read: the state changes across awaits. */
  private stopping(): boolean {
    return this.state === 'stopping';
  }

  private setState(state: State): void {
    this.state = state;
    try {
      this.hooks.onReady(state === 'ready');
    } catch (err) {
      // The hook is not supposed to throw; if it does, that is the runtime's fault, not Python's.
      this.hooks.onFatal(
        err instanceof FatalError ? err : new FatalError(ExitCode.socket, `readiness: ${(err as Error).message}`),
      );
    }
  }

  private async spawn(): Promise<ReadyInfo> {
    const { worker, ready } = await this.launch();
    this.active = worker;
    this.messages = 0;
    this.memoryErrors = 0;
    this.noticed.clear();
    this.activePid = ready.pid;
    this.loadedInfo = ready;
    // The pid is a field of this line; the lines after it carry it too (not twice here).
    if (this.slot?.index) this.log = this.baseLog.child({ worker: this.slot.index });
    this.events?.loaded?.(ready);
    this.log.info(
      {
        handler: this.config.handler,
        kind: ready.kind,
        callable: ready.callable,
        python: ready.python,
        codec: ready.codec,
        executable: ready.executable,
        python_pid: ready.pid,
        load_ms: ready.load_ms,
        forked: ready.forked || undefined,
      },
      'handler loaded',
    );
    if (this.slot?.index) this.log = this.baseLog.child({ worker: this.slot.index, python_pid: ready.pid });
    void worker.exited.then((death) => this.onExit(worker, death));
    return ready;
  }

  /**
   * Start a worker and load the handler. Running out of descriptors or processes is the environment's
   * state, not the handler's: waited out here with its own backoff, never counted as a failed start.
   */
  private async launch(): Promise<{ worker: Worker; ready: ReadyInfo }> {
    for (let attempt = 1; ; attempt++) {
      // Owned from the first moment, so a shutdown during a long __init__ can stop it.
      const worker = this.createWorker();
      this.worker = worker;
      try {
        return { worker, ready: await worker.handshake() };
      } catch (err) {
        if (!(err instanceof SpawnFailed && err.transient) || this.stopping()) throw err;
        const delay = spawnRetryDelay(attempt, this.policy.restart);
        this.log.warn(
          { code: err.code, attempt, delay_ms: delay },
          `cannot start the Python process (${err.message}); retrying`,
        );
        await new Promise((r) => setTimeout(r, delay));
        if (this.stopping()) throw err;
      }
    }
  }

  private onExit(worker: Worker, death: WorkerDied): void {
    if (worker !== this.worker) return;
    if (this.state === 'stopping') {
      // Not restarted, and no longer free: what is queued waits for the pool's other workers or is
      // closed unanswered (the sidecar redelivers it), never handed to the dead process.
      this.worker = null;
      this.active = null;
      this.draining = false;
      this.hooks.onFree();
      return;
    }
    this.worker = null;
    this.active = null;
    this.activePid = null;
    this.streak++;
    this.events?.restart?.(death.reason);
    this.log.error(
      {
        reason: death.reason,
        exit_code: death.exitCode,
        signal: death.signal,
        stderr_tail: death.stderrTail || undefined,
      },
      `Python process died (${death.message}); restarting it`,
    );
    void this.restart();
  }

  /**
   * Replace a healthy worker between messages. The old one is stopped (its close() runs) and gone
   * before the new one starts: a model on a GPU is a copy per process. Readiness is withdrawn
   * meanwhile, as for any restart: the runtime cannot serve until the new handler is loaded, and
   * messages that arrive wait in the queue.
   */
  private async recycle(why: RecycleReason): Promise<void> {
    const level = why.reason === 'max_messages' ? 'info' : 'warn';
    await this.retire(() =>
      this.log[level]({ reason: why.reason, ...why.fields }, `recycling the Python process: ${why.message}`),
    );
    if (this.stopping()) return;
    await this.restart();
  }

  /** Withdraw readiness and stop the current worker (its close() runs); resolves once it has exited. */
  private async retire(announce: () => void): Promise<void> {
    const old = this.worker;
    this.worker = null;
    this.active = null;
    this.activePid = null;
    this.setState('restarting');
    announce();
    if (old) {
      const stopping = old
        .stop(Math.max(this.policy.stopGraceMs, MIN_STOP_GRACE_MS))
        .finally(() => this.retiring.delete(old));
      this.retiring.set(old, stopping);
      // Waited for by close(); unless the next may share the model, here too, with any earlier one still exiting.
      if (!this.policy.replaceBeforeExit) await this.retired();
    }
  }

  /** Every worker being replaced has exited. */
  private retired(): Promise<unknown> {
    return Promise.all(this.retiring.values());
  }

  /**
   * Replace the Python process on request (`asya-runtime call --watch`, after the user edited their
   * code): the recycle path, after the message in flight. Unlike a crash restart it is tried once and
   * a handler that no longer loads is not fatal: the error is thrown (a FatalError naming the cause)
   * and the runtime stays up without a worker, not ready, until the next reload.
   */
  async reload(reason: string): Promise<ReadyInfo> {
    while (this.running && !this.stopping()) await this.running;
    if (this.stopping()) throw new FatalError(ExitCode.ok, 'the runtime is stopping');
    await this.retire(() => this.log.info({ reason }, `reloading the Python process: ${reason}`));
    if (this.stopping()) throw new FatalError(ExitCode.ok, 'the runtime is stopping');
    let ready: ReadyInfo;
    try {
      ready = await this.spawn();
    } catch (err) {
      throw toFatal(err, this.config);
    }
    if (this.stopping()) throw new FatalError(ExitCode.ok, 'the runtime is stopping');
    this.streak = 0;
    this.setState('ready');
    this.hooks.onFree();
    return ready;
  }

  private async restart(): Promise<void> {
    if (this.state !== 'restarting') this.setState('restarting');
    const { maxInitFailures } = this.policy.restart;
    for (let failures = 0; ; ) {
      const delay = restartDelay(this.streak, this.policy.restart);
      if (delay > 0) {
        this.log.warn({ delay_ms: delay, streak: this.streak }, 'backing off before restarting the Python process');
        await new Promise((r) => setTimeout(r, delay));
      }
      if (this.stopping()) return;
      try {
        await this.spawn();
      } catch (err) {
        // A shutdown cut the restart short (`asya-runtime call` after a crash): not a failure.
        if (this.stopping()) return;
        failures++;
        this.streak++;
        const fatal = toFatal(err, this.config);
        this.log.error({ attempt: failures, of: maxInitFailures }, `restart failed: ${fatal.message}`);
        if (failures >= maxInitFailures) {
          this.hooks.onFatal(
            new FatalError(
              ExitCode.restarts,
              `the Python process failed to re-initialise ${failures} times in a row; last cause: ${fatal.message}`,
              fatal.fields,
            ),
          );
          return;
        }
        continue;
      }
      // Outside the try: only a failed spawn is a reason to spawn again. Anything after it
      // (readiness) must not start a second interpreter next to the loaded one.
      if (this.stopping()) return;
      this.setState('ready');
      this.hooks.onFree();
      return;
    }
  }

  /** Run `job` on this worker; the pool hands one only while `free`. */
  take(job: Job): void {
    const worker = this.active;
    if (!this.free || worker === null) throw new Error('a message handed to a supervisor that is not free');
    this.inFlight = job;
    const running: Promise<void> = this.run(worker, job).finally(() => {
      if (this.running === running) this.running = null;
      this.release(worker, job);
    });
    this.running = running;
  }

  /** The worker is free again: recycle it if that is due, then the next message. */
  private release(worker: Worker, job: Job): void {
    if (this.inFlight !== job) return; // released already, before its answer was written (see run)
    this.inFlight = null;
    if (worker === this.active) this.checkRecycle(worker);
    this.hooks.onFree();
  }

  /** Between messages: a counter, and with ASYA_WORKER_MAX_MEMORY one read of /proc. */
  private recycleDue(worker: Worker): RecycleReason | null {
    const { recycle } = this.policy;
    return recycleReason(recycle, {
      messages: this.messages,
      rssBytes: recycle.maxMemoryBytes === null ? null : worker.rss(),
      consecutiveMemoryErrors: this.memoryErrors,
    });
  }

  private checkRecycle(worker: Worker): void {
    const why = this.recycleDue(worker);
    if (!why || this.state !== 'ready') return;
    if (this.slot?.mayRecycle && !this.slot.mayRecycle()) {
      this.log.debug({ reason: why.reason }, 'recycling deferred: another worker is not serving');
      return;
    }
    void this.recycle(why);
  }

  private async run(worker: Worker, job: Job): Promise<void> {
    const { envelope } = job;
    const deadline = deadlineOf(envelope);
    if (deadline !== null && 'invalid' in deadline) {
      warnInvalidDeadline(this.log, envelope.id, deadline.invalid);
    } else if (deadline !== null && deadline.at * 1000 <= Date.now()) {
      return this.deliver(job, answerPastDeadline(deadline.text, Date.now() / 1000 - deadline.at, this.at(job)), 0);
    }
    const { softMs, killGraceMs } = this.policy.timeLimit;
    // Two stages: interrupt inside Python (the model stays); kill only if that does not end the call.
    const limit =
      softMs === null
        ? null
        : new TimeLimit(
            softMs,
            killGraceMs,
            () => {
              this.log.warn(
                { id: envelope.id, timeout_s: softMs / 1000 },
                'handler ran longer than ASYA_HANDLER_TIMEOUT; interrupting it',
              );
              worker.interrupt();
            },
            () => {
              this.log.error(
                { id: envelope.id, kill_grace_s: killGraceMs / 1000 },
                'handler still running ASYA_HANDLER_KILL_GRACE after it was interrupted; killing the Python process',
              );
              worker.terminate('timeout');
            },
          );
    let outcome: CallOutcome;
    const context = { id: envelope.id, headers: envelope.headers };
    const started = this.events?.message ? process.hrtime.bigint() : 0n;
    // A handler with a `context` parameter: what it holds, and its client's leaving on the control path.
    const takesContext = this.loadedInfo?.context === true && worker === this.active;
    try {
      const meta = this.config.mode === 'envelope' || this.config.includeMetadata ? handlerMeta(envelope) : undefined;
      const request: CallRequest = { payload: envelope.payload, meta, wideIntegers: envelope.wideIntegers, context };
      // breakpoint() on a terminal (`asya-runtime call`): the time limit waits while the debugger is open.
      request.onDebugger = (open) => {
        if (open) limit?.pause();
        else limit?.resume();
        this.log.info(
          { src: 'debugger', id: envelope.id },
          open
            ? `breakpoint(): the debugger is open on the terminal${limit ? '; the time limit waits' : ''}`
            : `the debugger closed${limit ? '; the time limit runs again' : ''}`,
        );
      };
      if (takesContext) {
        if (meta === undefined) request.contextMeta = handlerMeta(envelope);
        if (deadline !== null && 'at' in deadline) request.deadline = deadline.at;
        job.exchange.onGone?.(() => {
          this.log.info({ ...messageLogFields(context) }, 'the client closed its connection: cancelling the call');
          worker.cancel?.();
        });
      }
      outcome = await worker.call(request);
    } catch (err) {
      if (!(err instanceof WorkerDied)) throw err;
      if (err.reason === 'stopped') return job.exchange.abort();
      return this.deliver(job, answerFromDeath(err, this.at(job)), secondsSince(started));
    } finally {
      limit?.clear();
      if (takesContext) job.exchange.onGone?.(null);
    }
    const gone = takesContext && job.exchange.clientGone();
    if (gone) {
      this.log.info(
        { ...messageLogFields(context), ms: msSince(job.received), outcome: outcome.kind },
        'the client left before the answer: it was dropped',
      );
    }
    this.messages++;
    this.memoryErrors = outcome.kind === 'raised' && outcome.type === 'MemoryError' ? this.memoryErrors + 1 : 0;
    // Python is free once its reply is in. With messages waiting, it gets the next one before this
    // answer is built and written, so it computes while the supervisor answers instead of waiting for
    // it (on two busy cores, one wake-up of the supervisor sooner per message). Not when a recycle is
    // due: that waits for this message's answer and line. With none due, release() would only check
    // it again (a second read of /proc with ASYA_WORKER_MAX_MEMORY): hand on directly.
    if (this.hooks.waiting() && worker === this.active && this.recycleDue(worker) === null) {
      this.inFlight = null;
      this.hooks.onFree();
    }
    // Python answered: the process is healthy, whatever the answer says.
    this.streak = 0;
    // Nobody reads it: no answer, no 'message handled' line and not counted as answered (the line
    // above says what became of it); a cancelled coroutine's CancelledError is no error to log.
    if (gone) return job.exchange.abort();
    this.deliver(job, answerFromOutcome(outcome, this.at(job)), secondsSince(started));
  }

  /** What an answer needs to know of the message and the rules. */
  private at(job: Job): AnswerContext {
    const { validate } = this.config;
    return { envelope: job.envelope, ms: msSince(job.received), validate, timeLimit: this.policy.timeLimit };
  }

  /** Write the answer, count it, log it: a failure's line first, a success's after the bytes are on their way. */
  private deliver(job: Job, answer: Answer, pythonSeconds: number): void {
    if (answer.line) this.log[answer.line.level](answer.line.fields, answer.line.msg);
    const { notice } = answer;
    if (notice && !this.noticed.has(notice.once)) {
      this.noticed.add(notice.once);
      this.log[notice.level](notice.fields, notice.msg);
    }
    job.exchange.respond(answer.chunks);
    this.events?.message?.(answer.outcome, pythonSeconds);
    // The line (a write to stderr) is not on the sidecar's clock.
    if (answer.outputs !== undefined) this.logHandled(job, answer.outputs);
  }

  private logHandled(job: Job, outputs: number): void {
    const level = this.logEachMessage ? 'info' : 'debug';
    if (!this.log.isLevelEnabled(level)) return;
    const { envelope } = job;
    batched(this.log)[level](
      { id: envelope.id, ...traceField(envelope.headers), ms: msSince(job.received), outcome: 'ok', outputs },
      'message handled',
    );
  }
}

function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function traceField(headers: Buffer | undefined): { trace_id?: string } {
  if (headers === undefined) return {};
  const traceId = traceIdOf(headers);
  return traceId === undefined ? {} : { trace_id: traceId };
}

/** An unreadable `deadline` is ignored, with one WARNING a minute at most (for the whole runtime). */
const INVALID_DEADLINE_WARNING_MS = 60_000;
let lastInvalidDeadlineWarning = -Infinity;

function warnInvalidDeadline(log: Logger, id: string | undefined, text: string): void {
  const now = Date.now();
  if (now - lastInvalidDeadlineWarning < INVALID_DEADLINE_WARNING_MS) return;
  lastInvalidDeadlineWarning = now;
  log.warn(
    { id, deadline: text.slice(0, 200) },
    "the envelope's deadline is not an RFC 3339 time (e.g. 2026-12-03T07:00:00+00:00): ignored (this warning: at most once a minute)",
  );
}
