/**
 * The supervisor: a FIFO of checked requests, fed one at a time to the Python worker (handlers
 * are not thread-safe by contract), and the worker's lifecycle around it. A dead worker's
 * in-flight message is answered, the worker is restarted with backoff, and readiness follows.
 */
import type { Config } from '../config.js';
import { type RequestEnvelope, envelopeModeResponse, handlerMeta, payloadModeResponse } from '../envelope/envelope.js';
import { ExitCode, FatalError, WireError, wireError } from '../errors.js';
import type { Logger } from '../logger.js';
import { errorResponse, frameChunks } from '../socket/framing.js';
import type { Exchange } from '../socket/server.js';
import { type CallOutcome, HandlerLoadFailed, PythonWorker, type ReadyInfo, SpawnFailed, WorkerDied, type WorkerOptions } from './worker.js';

export interface Job {
  envelope: RequestEnvelope;
  exchange: Exchange;
  /** process.hrtime.bigint() when the request was complete, for latency logs. */
  received: bigint;
}

/** Consecutive failed re-initialisations after which the runtime gives up and exits. */
export const MAX_INIT_FAILURES = 5;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 15_000;
/** Retries of a spawn refused for lack of descriptors stay frequent: they cost nothing and end the outage sooner. */
const SPAWN_RETRY_MAX_MS = 5_000;

/** No delay for the first restart in a streak; then 250 ms, 500 ms, ... up to 15 s. */
export function restartDelay(streak: number): number {
  return streak <= 1 ? 0 : Math.min(BACKOFF_BASE_MS * 2 ** (streak - 2), BACKOFF_MAX_MS);
}

/** A drop's log line names at most this many message ids. */
const MAX_LOGGED_IDS = 10;

type State = 'starting' | 'ready' | 'restarting' | 'stopping';

export class Supervisor {
  private state: State = 'starting';
  /** The current Python process, from spawn on (it may still be in __init__). */
  private worker: PythonWorker | null = null;
  /** The same process once its handler is loaded: the only one calls go to. */
  private active: PythonWorker | null = null;
  private readonly queue: Job[] = [];
  private inFlight: Job | null = null;
  /** Deaths and failed inits since the last successful call. */
  private streak = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly config: Config,
    private readonly workerOptions: WorkerOptions,
    private readonly log: Logger,
    private readonly hooks: {
      /** Readiness follows the worker: false while it is restarting. */
      onReady: (ready: boolean) => void;
      /** The worker cannot be brought back; the runtime must exit. */
      onFatal: (err: FatalError) => void;
    },
  ) {}

  /** First start: a handler that cannot load is fatal at once (never serve a broken handler). */
  async start(): Promise<ReadyInfo> {
    try {
      const ready = await this.spawn();
      this.setState('ready');
      this.pump(); // messages may have queued up during a long __init__
      return ready;
    } catch (err) {
      throw toFatal(err, this.config.handler);
    }
  }

  submit(job: Job): void {
    this.queue.push(job);
    this.pump();
  }

  get queued(): number {
    return this.queue.length + (this.inFlight ? 1 : 0);
  }

  /**
   * Stop taking work, finish what is queued and in flight within `graceMs`, then close whatever
   * is left without an answer and stop the worker.
   */
  async shutdown(graceMs: number): Promise<{ unfinished: number }> {
    const wasReady = this.state === 'ready';
    this.setState('stopping');
    if (this.queued > 0 && wasReady) {
      this.log.info({ queued: this.queued, grace_ms: graceMs }, 'finishing queued and in-flight messages');
      // Queued messages still run: the worker is up and the sidecar is waiting for them.
      this.pumpWhileStopping = true;
      this.pump();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    const unfinished = this.queued;
    for (const job of this.queue.splice(0)) job.exchange.abort();
    const worker = this.worker;
    this.worker = null;
    this.active = null;
    if (worker) {
      // In flight past the grace period, or still in __init__: nothing to wait for.
      if (this.inFlight || !wasReady) worker.terminate('stopped');
      await worker.stop(2000);
    }
    return { unfinished };
  }

  private pumpWhileStopping = false;

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
      this.hooks.onFatal(err instanceof FatalError ? err : new FatalError(ExitCode.socket, `readiness: ${(err as Error).message}`));
    }
  }

  private async spawn(): Promise<ReadyInfo> {
    const { worker, ready } = await this.launch();
    this.active = worker;
    this.log.info(
      { handler: this.config.handler, kind: ready.kind, python: ready.python, codec: ready.codec, executable: ready.executable, python_pid: ready.pid, load_ms: ready.load_ms },
      'handler loaded',
    );
    void worker.exited.then((death) => this.onExit(worker, death));
    return ready;
  }

  /**
   * Start a worker and load the handler. Running out of descriptors or processes is the environment's
   * state, not the handler's: waited out here with its own backoff, never counted as a failed start.
   */
  private async launch(): Promise<{ worker: PythonWorker; ready: ReadyInfo }> {
    for (let attempt = 1; ; attempt++) {
      // Owned from the first moment, so a shutdown during a long __init__ can stop it.
      const worker = PythonWorker.spawn(this.workerOptions);
      this.worker = worker;
      try {
        return { worker, ready: await worker.handshake() };
      } catch (err) {
        if (!(err instanceof SpawnFailed && err.transient) || this.stopping()) throw err;
        const delay = Math.min(BACKOFF_BASE_MS * 2 ** (attempt - 1), SPAWN_RETRY_MAX_MS);
        this.log.warn({ code: err.code, attempt, delay_ms: delay }, `cannot start the Python process (${err.message}); retrying`);
        await new Promise((r) => setTimeout(r, delay));
        if (this.stopping()) throw err;
      }
    }
  }

  private onExit(worker: PythonWorker, death: WorkerDied): void {
    if (worker !== this.worker || this.state === 'stopping') return;
    this.worker = null;
    this.active = null;
    this.streak++;
    this.log.error(
      { reason: death.reason, exit_code: death.exitCode, signal: death.signal, stderr_tail: death.stderrTail || undefined },
      `Python process died (${death.message}); restarting it`,
    );
    void this.restart();
  }

  private async restart(): Promise<void> {
    this.setState('restarting');
    for (let failures = 0; ; ) {
      const delay = restartDelay(this.streak);
      if (delay > 0) {
        this.log.warn({ delay_ms: delay, streak: this.streak }, 'backing off before restarting the Python process');
        await new Promise((r) => setTimeout(r, delay));
      }
      if (this.stopping()) return;
      try {
        await this.spawn();
      } catch (err) {
        failures++;
        this.streak++;
        const fatal = toFatal(err, this.config.handler);
        this.log.error({ attempt: failures, of: MAX_INIT_FAILURES }, `restart failed: ${fatal.message}`);
        if (failures >= MAX_INIT_FAILURES) {
          this.hooks.onFatal(
            new FatalError(ExitCode.restarts, `the Python process failed to re-initialise ${failures} times in a row; last cause: ${fatal.message}`, fatal.fields),
          );
          return;
        }
        continue;
      }
      // Outside the try: only a failed spawn is a reason to spawn again. Anything after it
      // (readiness) must not start a second interpreter next to the loaded one.
      if (this.stopping()) return;
      this.setState('ready');
      this.pump();
      return;
    }
  }

  private pump(): void {
    const serving = this.state === 'ready' || (this.state === 'stopping' && this.pumpWhileStopping);
    if (!serving || this.inFlight || !this.active) {
      if (this.queued === 0) this.notifyIdle();
      return;
    }
    const job = this.nextLiveJob();
    if (!job) {
      this.notifyIdle();
      return;
    }
    this.inFlight = job;
    void this.run(this.active, job).finally(() => {
      this.inFlight = null;
      this.pump();
    });
  }

  /**
   * The first queued job whose client is still there. A message whose client closed its connection
   * while it waited is dropped, not run: the sidecar redelivers it, and running it twice is worse
   * than not at all (20 abandoned 0.5 s messages used to delay the next live client by 10 s).
   */
  private nextLiveJob(): Job | undefined {
    const dropped: Array<string | null> = [];
    let job: Job | undefined;
    while ((job = this.queue.shift()) && job.exchange.clientGone()) {
      job.exchange.abort();
      dropped.push(job.envelope.id ?? null);
    }
    if (dropped.length > 0) {
      this.log.warn(
        { dropped: dropped.length, ids: dropped.slice(0, MAX_LOGGED_IDS), queued: this.queue.length + (job ? 1 : 0) },
        `dropped ${dropped.length} queued message(s) whose client closed its connection before the handler ran; the sidecar redelivers them`,
      );
    }
    return job;
  }

  private notifyIdle(): void {
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async run(worker: PythonWorker, job: Job): Promise<void> {
    const { envelope } = job;
    let outcome: CallOutcome;
    try {
      const meta = this.config.mode === 'envelope' || this.config.includeMetadata ? handlerMeta(envelope) : undefined;
      outcome = await worker.call({ payload: envelope.payload, meta, wideIntegers: envelope.wideIntegers }, this.config.handlerTimeoutMs);
    } catch (err) {
      if (!(err instanceof WorkerDied)) throw err;
      if (err.reason === 'stopped') return job.exchange.abort();
      const answer =
        err.reason === 'timeout'
          ? wireError.timeout((this.config.handlerTimeoutMs ?? 0) / 1000)
          : wireError.crashed(err.exitCode, err.signal, err.stderrTail);
      this.log.error({ id: envelope.id, error: answer.code }, answer.message);
      return job.exchange.respond(errorResponse(answer));
    }
    job.exchange.respond(this.answer(job, outcome));
  }

  private answer(job: Job, outcome: CallOutcome): Buffer[] {
    const { envelope } = job;
    const ms = Number(process.hrtime.bigint() - job.received) / 1e6;
    // Python answered: the process is healthy, whatever the answer says.
    this.streak = 0;
    try {
      switch (outcome.kind) {
        case 'payloads':
        case 'envelopes': {
          const body =
            outcome.kind === 'payloads'
              ? payloadModeResponse(envelope, outcome.payloads)
              : envelopeModeResponse(envelope, outcome.outputs, this.config.validate);
          this.log.debug({ id: envelope.id, ms }, 'message handled');
          return frameChunks(body);
        }
        case 'raised':
          this.log.error({ id: envelope.id, type: outcome.type, traceback: outcome.traceback, ms }, `handler raised ${outcome.type}: ${outcome.message}`);
          return errorResponse(wireError.processing(outcome.message, outcome.type, outcome.traceback));
        case 'bad_input':
          this.log.warn({ id: envelope.id, type: outcome.type }, `payload is not valid JSON: ${outcome.message}`);
          return errorResponse(wireError.parsing(`invalid JSON in field 'payload': ${outcome.message}`, outcome.type));
      }
    } catch (err) {
      const answer = err instanceof WireError ? err : wireError.processing(`could not build the response: ${(err as Error).message}`, 'RuntimeError');
      this.log.error({ id: envelope.id, error: answer.code }, answer.message);
      return errorResponse(answer);
    }
  }
}

export function toFatal(err: unknown, handler: string): FatalError {
  if (err instanceof FatalError) return err;
  if (err instanceof HandlerLoadFailed) {
    return new FatalError(ExitCode.handler, `cannot load handler ${JSON.stringify(handler)}: ${err.message}`, {
      type: err.type,
      traceback: err.traceback || undefined,
    });
  }
  if (err instanceof WorkerDied) {
    const tail = err.stderrTail ? `; its last output:\n${err.stderrTail}` : '';
    return new FatalError(ExitCode.handler, `the Python process ended before loading handler ${JSON.stringify(handler)} (${err.message})${tail}`);
  }
  return new FatalError(ExitCode.handler, `cannot start the Python process: ${(err as Error).message}`);
}
