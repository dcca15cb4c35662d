/**
 * ASYA_PRELOAD: workers forked from a loaded template instead of each loading the handler.
 *
 * The template is a shim that loads the handler once and then only forks (asya_shim.py, "template");
 * it never handles a message. A forked worker is started the way a spawned one is, through a porter
 * process with the same pipes, lifeline and exit report, so the supervisor cannot tell them apart:
 * this module is a way of starting a worker, not a second supervisor. It keeps one template loaded,
 * loads it again when it dies (the first worker that asks starts the load; every other waits for it),
 * and hands each worker the template's fork-request socket.
 *
 * It also keeps one spare: a worker already forked and handshaken, idle, for the next slot that needs
 * one. Starting a porter is a Python start (tens of milliseconds); with the spare, a crash, a hard time
 * limit or a recycle is replaced at once and the next spare is forked while the new worker serves.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';
import { porterLaunch } from './shim.js';
import {
  type CallOutcome,
  type CallRequest,
  type DeathReason,
  PythonWorker,
  type ReadyInfo,
  SpawnFailed,
  type Worker,
  WorkerDied,
  type WorkerFactory,
  type WorkerOptions,
} from './worker.js';

/** How a porter that forked no worker exits (python-shim/src/porter.py): the template is gone, or could not fork. */
const TEMPLATE_GONE_EXIT = 75;
const FORK_FAILED_EXIT = 71;
/**
 * A fork takes milliseconds (a page-table copy: ~1 s for the largest models). A template that has not
 * forked a worker in this long is stuck (stopped, or a thread of the handler holds the interpreter in
 * a C call) and is replaced: nothing else would ever end the wait.
 */
const FORK_TIMEOUT_MS = 30_000;
/** What a worker stopped by a reload has to run close() (the supervisor's minimum). */
const RELOAD_STOP_GRACE_MS = 2000;

/** A loaded template: the socket porters reach it through, and its end. */
export interface LoadedTemplate {
  requests: Duplex;
  exited: Promise<WorkerDied>;
  ready: ReadyInfo;
}

export class Template {
  private current: { worker: PythonWorker; loaded: LoadedTemplate } | null = null;
  private loading: Promise<LoadedTemplate> | null = null;
  /** Templates replaced by a reload, still serving the workers forked from them. */
  private retired: PythonWorker[] = [];
  /** The template being loaded: a shutdown during its __init__ stops it. */
  private starting: PythonWorker | null = null;
  private stopping = false;
  /** A forked worker, handshaken and idle, for the next slot that asks (null while one is being forked). */
  private spare: ForkedWorker | null = null;
  private forkingSpare = false;
  /** The last spare died before any slot took it: a dying spare is not replaced twice in a row. */
  private spareDiedUnused = false;
  /** Bumped by a reload: a spare forked from the template before it is never handed out after. */
  private generation = 0;

  /** What the template now serving reported when it loaded the handler, or null before one has. */
  get loaded(): ReadyInfo | null {
    return this.current?.loaded.ready ?? null;
  }

  constructor(
    private readonly options: WorkerOptions,
    private readonly log: Logger,
  ) {}

  /**
   * The loaded template, loading it first when there is none (the first start, after its death, after a
   * reload). Rejects as a worker's handshake would (HandlerLoadFailed, WorkerDied, SpawnFailed) when it
   * cannot load; the next call tries again.
   */
  acquire(): Promise<LoadedTemplate> {
    if (this.current) return Promise.resolve(this.current.loaded);
    this.loading ??= this.load().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  private async load(): Promise<LoadedTemplate> {
    if (this.stopping) throw new WorkerDied('stopped', null, null, '');
    const started = Date.now();
    const worker = PythonWorker.spawn({ ...this.options, fork: 'template' });
    // Only the first template may adopt the process started early.
    this.options.early = null;
    this.starting = worker;
    let ready: ReadyInfo;
    try {
      ready = await worker.handshake();
    } finally {
      this.starting = null;
    }
    const requests = worker.forkRequests;
    if (this.stopping || requests === null) {
      await worker.stop(0);
      throw new WorkerDied('stopped', null, null, '');
    }
    const loaded: LoadedTemplate = { requests, exited: worker.exited, ready };
    this.current = { worker, loaded };
    this.log.info(
      { python_pid: ready.pid, load_ms: ready.load_ms, ms: Date.now() - started },
      'template loaded: workers are forked from it (ASYA_PRELOAD)',
    );
    this.spareDiedUnused = false;
    this.forkSpare();
    if (ready.threads?.length) {
      this.log.warn(
        { threads: ready.threads, python_pid: ready.pid },
        `threads running in the template when it forks (${ready.threads.join(', ')}): a fork copies only the ` +
          'calling thread, so the workers do not have them, and a lock one of them holds stays locked there; ' +
          'start threads in the first call rather than in __init__ or at import',
      );
    }
    void worker.exited.then((death) => {
      if (this.current?.worker !== worker) return;
      this.current = null;
      if (this.stopping) return;
      this.log.error(
        {
          python_pid: ready.pid,
          exit_code: death.exitCode,
          signal: death.signal,
          stderr_tail: death.stderrTail || undefined,
        },
        `the template process died (${death.message}); its workers went with it; loading it again`,
      );
    });
    return loaded;
  }

  /** `template` has not forked a worker within FORK_TIMEOUT_MS: kill it; the next worker loads another. */
  stuck(template: LoadedTemplate): void {
    if (this.current?.loaded !== template || this.stopping) return;
    this.log.error(
      { python_pid: template.ready.pid, timeout_s: FORK_TIMEOUT_MS / 1000 },
      `the template did not fork a worker within ${FORK_TIMEOUT_MS / 1000} s (stopped, or a thread of the handler holds the interpreter); killing it`,
    );
    this.current.worker.terminate('timeout');
  }

  /** A worker that is forked from the template: the spare when there is one, else forked now. */
  factory(options: WorkerOptions): WorkerFactory {
    return () => {
      const spare = this.spare;
      if (spare === null || !spare.alive) return new ForkedWorker(this, { ...options, early: null });
      this.spare = null;
      this.spareDiedUnused = false;
      spare.relabel(options.log);
      this.forkSpare();
      return spare;
    };
  }

  /** Fork the next spare in the background; a failure is left to the next worker that asks. */
  private forkSpare(): void {
    if (this.stopping || this.spare !== null || this.forkingSpare) return;
    this.forkingSpare = true;
    const generation = this.generation;
    const worker = new ForkedWorker(this, { ...this.options, early: null, background: true });
    worker.handshake().then(
      (ready) => {
        this.forkingSpare = false;
        if (this.stopping || generation !== this.generation) return void worker.stop(RELOAD_STOP_GRACE_MS);
        this.spare = worker;
        this.log.debug({ python_pid: ready.pid, fork_ms: ready.load_ms }, 'spare worker forked');
        const from = this.current;
        void worker.exited.then((death) => {
          if (this.spare !== worker) return;
          this.spare = null;
          // Gone with its template (which logs that), stopping, or replaced by a reload: nothing to add.
          if (this.stopping || generation !== this.generation || this.current !== from) return;
          this.log.warn(
            { python_pid: ready.pid, exit_code: death.exitCode, signal: death.signal },
            `the spare worker died (${death.message})`,
          );
          // Forked again at once, unless the one before also died unused: then at the next need.
          if (!this.spareDiedUnused) this.forkSpare();
          this.spareDiedUnused = true;
        });
      },
      (err: unknown) => {
        this.forkingSpare = false;
        this.log.debug({ err }, 'no spare worker: the fork failed');
      },
    );
  }

  /**
   * `asya-runtime call --watch`: the next worker forks from a template loaded afresh. The one replaced
   * keeps the workers forked from it until they are replaced too; the function returned stops it.
   */
  reload(): () => Promise<void> {
    const old = this.current?.worker;
    this.current = null;
    this.generation++;
    void this.spare?.stop(RELOAD_STOP_GRACE_MS);
    this.spare = null;
    if (old) this.retired.push(old);
    return async () => {
      if (!old) return;
      await old.stop(RELOAD_STOP_GRACE_MS);
      this.retired = this.retired.filter((w) => w !== old);
    };
  }

  /** After every worker has stopped: the template exits (close() is the workers', never its own). */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.starting?.terminate('stopped');
    const spare = this.spare;
    this.spare = null;
    await spare?.stop(graceMs); // a worker like the others: its close() runs
    await this.loading?.catch(() => undefined);
    const all = [...this.retired, ...(this.current ? [this.current.worker] : [])];
    this.current = null;
    this.retired = [];
    await Promise.all(all.map((w) => w.stop(graceMs)));
  }
}

/**
 * One worker forked from the template, through a porter the supervisor spawns (asya_shim.py,
 * run_porter). Until the template is loaded it is a promise of one; then every call goes to the porter's
 * PythonWorker, whose pipes the forked process holds.
 */
class ForkedWorker implements Worker {
  readonly exited: Promise<WorkerDied>;
  private settleExit!: (death: WorkerDied) => void;
  private inner: PythonWorker | null = null;
  private stopped: WorkerDied | null = null;
  /** Handshaken already (a spare): the supervisor's handshake gets this at once. */
  private ready: ReadyInfo | null = null;
  private dead = false;

  constructor(
    private readonly template: Template,
    private readonly options: WorkerOptions,
  ) {
    this.exited = new Promise((resolve) => (this.settleExit = resolve));
    void this.exited.then(() => (this.dead = true));
  }

  get alive(): boolean {
    return !this.dead && this.stopped === null && !this.inner?.doomed;
  }

  relabel(log: Logger): void {
    this.inner?.relabel(log);
  }

  async handshake(): Promise<ReadyInfo> {
    if (this.ready) return this.ready;
    for (;;) {
      const template = await this.template.acquire();
      if (this.stopped) throw this.stopped;
      const inner = PythonWorker.spawn({
        ...this.options,
        shim: porterLaunch(),
        fork: { template: template.requests },
      });
      this.inner = inner;
      // This worker's end is its porter's, once the porter has one: not that of a porter whose template
      // died before forking (the next one takes its place; its end was settled too early here once,
      // and the worker forked next ran on, unaccounted for).
      const linkExit = () => void inner.exited.then((death) => this.settleExit(death));
      const stuck = setTimeout(() => this.template.stuck(template), FORK_TIMEOUT_MS);
      try {
        this.ready = await inner.handshake();
        linkExit();
        return this.ready;
      } catch (err) {
        const retry = err instanceof WorkerDied && err.exitCode === TEMPLATE_GONE_EXIT && !this.stopped;
        if (!retry) linkExit();
        if (err instanceof WorkerDied && err.exitCode === FORK_FAILED_EXIT && !this.stopped) {
          // Out of memory or processes in the template: the environment's state, retried with backoff.
          throw new SpawnFailed(
            'EAGAIN',
            'a worker from the template',
            err.stderrTail || 'the template could not fork',
          );
        }
        if (!(err instanceof WorkerDied && err.exitCode === TEMPLATE_GONE_EXIT) || this.stopped) throw err;
        // The template died under this request: wait until its end is seen, then ask the next one.
        this.inner = null;
        await template.exited;
      } finally {
        clearTimeout(stuck);
      }
    }
  }

  call(request: CallRequest): Promise<CallOutcome> {
    return this.inner
      ? this.inner.call(request)
      : Promise.reject(this.stopped ?? new Error('ForkedWorker: not forked'));
  }

  interrupt(): void {
    this.inner?.interrupt();
  }

  rss(): number | null {
    return this.inner?.rss() ?? null;
  }

  async stop(graceMs: number): Promise<WorkerDied> {
    if (this.inner) return this.inner.stop(graceMs);
    return this.stopBeforeFork('stopped');
  }

  terminate(reason: DeathReason): void {
    if (this.inner) this.inner.terminate(reason);
    else void this.stopBeforeFork(reason);
  }

  /** Stopped while waiting for the template: there is no process to stop. */
  private async stopBeforeFork(reason: DeathReason): Promise<WorkerDied> {
    this.stopped ??= new WorkerDied(reason, null, null, '');
    this.settleExit(this.stopped);
    return this.stopped;
  }
}
