/**
 * The queue and its workers. ASYA_WORKERS=N: N Python processes, each with the handler loaded and
 * each supervised on its own (crash answers, time limits, recycling, restarts with their own backoff;
 * supervisor.ts), serving one queue. Messages go, in arrival order, to whichever worker is free;
 * readiness stands while at least one can serve, so a worker restarting (a crash, the hard time
 * limit, recycling: minutes for a large model) costs capacity, not availability. N=1 is the usual pod.
 */
import type { Config } from '../config.js';
import { FatalError } from '../errors.js';
import type { Logger } from '../logger.js';
import { toFatal } from './errors.js';
import { type Job, JobQueue } from './job-queue.js';
import type { WorkerPolicy } from './policy.js';
import { Supervisor, type SupervisorEvents } from './supervisor.js';
import type { ReadyInfo, WorkerFactory } from './worker.js';

/**
 * How the pool's workers come to be: each spawned and loading the handler (a factory per worker), or
 * forked from a template that loaded it once (template.ts), which the pool stops after its workers and
 * reloads before them.
 */
export interface WorkerStarter {
  /** The factory of worker `index` (from 1); its Python output lines may name the worker. */
  factory(index: number): WorkerFactory;
  /** After every worker has stopped. */
  stop?(graceMs: number): Promise<void>;
  /** Before the workers reload; what it returns runs after them. */
  reload?(): () => Promise<void>;
}

export interface PoolHooks {
  /** True while at least one worker can serve. Called on every worker's change; repeats are harmless. */
  onReady: (ready: boolean) => void;
  /** A worker cannot be brought back (or one of N failed its first load): the runtime must exit. */
  onFatal: (err: FatalError) => void;
}

/** What a template has to exit once its workers are gone (it runs no close()). */
const STARTER_STOP_MS = 2000;

export class Pool {
  private readonly queue = new JobQueue();
  private readonly supervisors: Supervisor[];
  /** Readiness waits for every worker's first load (see start()); from then on one serving is enough. */
  private allLoaded = false;
  private readonly starter: WorkerStarter;
  /** Resolved when nothing is queued or in flight (shutdown waits for it). */
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly config: Config,
    policy: WorkerPolicy,
    /** A starter, or just the factory of worker `index` (from 1). */
    starter: WorkerStarter | ((index: number) => WorkerFactory),

    private readonly log: Logger,
    private readonly hooks: PoolHooks,
    events: SupervisorEvents | null = null,
    logEachMessage = true,
  ) {
    this.starter = typeof starter === 'function' ? { factory: starter } : starter;
    const size = config.workers;
    const serving = new Array<boolean>(size).fill(false);
    this.supervisors = Array.from({ length: size }, (_, i) => {
      const onReady = (up: boolean) => {
        serving[i] = up;
        hooks.onReady(this.allLoaded && serving.includes(true));
      };
      const slot = {
        index: size > 1 ? i + 1 : null,
        mayRecycle: () => serving.every((up, j) => up || j === i),
      };
      return new Supervisor(
        config,
        policy,
        this.starter.factory(i + 1),
        log,
        {
          onReady,
          onFatal: hooks.onFatal,
          onFree: () => this.dispatch(),
          waiting: () => this.queue.length > 0,
        },
        events,
        logEachMessage,
        slot,
      );
    });
  }

  get size(): number {
    return this.supervisors.length;
  }

  /**
   * Load the handler in every worker at once. Resolves, and readiness first stands, when all have
   * loaded; the first failure rejects (all run the same code, so it is the configuration: N copies
   * that do not fit in memory or on the GPU). Ready at the first load instead, a second copy that then
   * failed ended a runtime that had already taken traffic, its messages closed unanswered.
   */
  start(): Promise<ReadyInfo> {
    const first = this.supervisors[0]!;
    if (this.size === 1) {
      this.allLoaded = true;
      return first.start();
    }
    return new Promise((resolve, reject) => {
      let settled = false;
      let loaded = 0;
      this.supervisors.forEach((supervisor, i) => {
        supervisor.start().then(
          (ready) => {
            if (settled || ++loaded < this.size) return;
            settled = true;
            this.allLoaded = true;
            this.hooks.onReady(this.serving > 0);
            resolve(ready);
          },
          (err: unknown) => {
            const fatal = this.startFailure(i + 1, toFatal(err, this.config));
            if (settled) return this.hooks.onFatal(fatal);
            settled = true;
            reject(fatal);
          },
        );
      });
    });
  }

  private startFailure(worker: number, err: FatalError): FatalError {
    const loaded = this.supervisors.filter((s) => s.loaded !== null).length;
    const hint =
      loaded > 0
        ? ` (${loaded} other worker(s) loaded it: ${this.size} copies of the handler may not fit in memory or on the GPU; lower ASYA_WORKERS)`
        : '';
    return new FatalError(err.exitCode, `worker ${worker} of ${this.size}: ${err.message}${hint}`, {
      ...err.fields,
      worker,
    });
  }

  /** Queue a message; the first free worker takes the oldest. */
  submit(job: Job): void {
    this.queue.push(job);
    this.dispatch();
  }

  /** Hand the oldest messages whose clients are still there to the free workers, in worker order. */
  private dispatch(): void {
    for (const supervisor of this.supervisors) {
      if (this.queue.length === 0) break;
      if (!supervisor.free) continue;
      const job = this.queue.takeLive(this.log);
      if (job) supervisor.take(job);
    }
    // Shutdown waits until nothing is queued or in flight, or until no worker is left to take what is.
    if (this.idleWaiters.length === 0) return;
    if (this.queued === 0 || !this.supervisors.some((s) => s.busy || s.free))
      for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Messages received and not yet answered, those in the handlers included. */
  get queued(): number {
    return this.queue.length + this.supervisors.filter((s) => s.busy).length;
  }

  /** How many workers have the handler loaded and take messages. */
  get serving(): number {
    return this.supervisors.filter((s) => s.serving).length;
  }

  /** The pids of the Python processes that run the handler, those loaded. */
  get pythonPids(): number[] {
    return this.supervisors.flatMap((s) => (s.pythonPid === null ? [] : [s.pythonPid]));
  }

  /** What the first loaded worker reported when it loaded the handler; null while none is loaded. */
  get loaded(): ReadyInfo | null {
    for (const supervisor of this.supervisors) if (supervisor.loaded) return supervisor.loaded;
    return null;
  }

  /**
   * Stop taking work; every worker that was serving finishes what is queued and in flight within
   * `graceMs` (together, so one still restarting leaves the queue to the others); then what is left
   * is closed without an answer, and all workers are stopped at once (their close() hooks run).
   */
  async shutdown(graceMs: number): Promise<{ unfinished: number }> {
    const started = Date.now();
    const wasServing = this.supervisors.map((s) => s.stopTaking());
    if (this.queued > 0 && wasServing.includes(true)) {
      this.log.info({ queued: this.queued, grace_ms: graceMs }, 'finishing queued and in-flight messages');
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      this.dispatch();
      await Promise.race([idle, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    const unfinished = this.queued;
    this.queue.abortAll();
    const left = graceMs - (Date.now() - started);
    await Promise.all(this.supervisors.map((s, i) => s.close(wasServing[i]!, left)));
    await this.starter.stop?.(Math.max(graceMs - (Date.now() - started), STARTER_STOP_MS));
    return { unfinished };
  }

  /**
   * Replace every Python process between messages (`asya-runtime call --watch`, which runs one), one
   * worker after another, so the others serve meanwhile.
   */
  async reload(reason: string): Promise<ReadyInfo> {
    const finish = this.starter.reload?.();
    try {
      let first: ReadyInfo | null = null;
      for (const supervisor of this.supervisors) {
        const ready = await supervisor.reload(reason);
        first ??= ready;
      }
      return first!;
    } finally {
      await finish?.();
    }
  }
}
