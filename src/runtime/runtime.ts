/**
 * The runtime's lifecycle: configuration in, socket up, handler loaded, ready file written,
 * serve until SIGTERM/SIGINT, then drain and clean up. Every way out is one log line and an
 * exit code.
 */
import fs from 'node:fs';
import type { Config } from '../config.js';
import { parseRequest } from '../envelope/envelope.js';
import { ExitCode, FatalError, WireError } from '../errors.js';
import { type Logger, logFatal } from '../logger.js';
import { errorResponse } from '../socket/framing.js';
import { SocketServer } from '../socket/server.js';
import { mark, markAt, startupMarks } from '../startup.js';
import { VERSION } from '../version.js';
import { resolveInterpreter } from '../worker/interpreter.js';
import { policyFromConfig } from '../worker/policy.js';
import type { WorkerStarter } from '../worker/pool.js';
import { Pool } from '../worker/pool.js';
import { shimLaunch } from '../worker/shim.js';
import type { EarlyPython } from '../worker/spawn.js';
import { Template } from '../worker/template.js';
import { PythonWorker, type ReadyInfo, type WorkerOptions } from '../worker/worker.js';
import { tuneSupervisorMemory } from './heap.js';
import { MessageMemory } from './message-memory.js';
import type { MetricsServer, RuntimeMetrics } from './metrics.js';
import { ReadyFile } from './readiness.js';
import { optimiseHotPathEarly } from './tiering.js';

/** Where the socket directory cannot be watched, how often it is checked instead. */
const WATCH_INTERVAL_MS = 1000;

export interface RunningRuntime {
  /** Resolves with the exit code once the runtime has stopped. */
  done: Promise<number>;
  /** Resolves true when the runtime first becomes ready, false if it stops before that. */
  ready: Promise<boolean>;
  /** Stop: messages in flight get `graceMs` (default ASYA_SHUTDOWN_TIMEOUT) to finish. */
  shutdown(reason: string, graceMs?: number): Promise<number>;
  /** What the Python process now serving reported when it loaded the handler (pid, load time, module file). */
  loaded(): ReadyInfo | null;
  /**
   * Replace the Python process between messages (`asya-runtime call --watch`). Resolves with the new
   * process's load report; rejects with a FatalError when the handler no longer loads (the runtime
   * stays up, not ready, until the next reload) or the runtime is stopping.
   */
  reload(reason: string): Promise<ReadyInfo>;
}

export interface RuntimeOptions {
  /** The environment `config` was parsed from: it also decides how the interpreter is looked up and reported. */
  env: NodeJS.ProcessEnv;
  /** Directories put in front of the handler's sys.path (`asya-runtime call` adds the working directory). */
  extraPath?: string[];
  /** The shim process started before the configuration was read (cli.ts), for the first worker. */
  early?: EarlyPython | null;
  /** The terminal a handler's breakpoint() opens the debugger on (`asya-runtime call` on one); unset: none. */
  terminal?: string | null;
}

/**
 * How to start the Python worker for this configuration. Finds the interpreter first, so a
 * missing Python is a FatalError before anything else happens; shared by `serve` and `check`
 * so both load the handler the same way.
 */
export function workerOptions(
  config: Config,
  env: NodeJS.ProcessEnv,
  log: Logger,
  extraPath?: string[],
  early?: EarlyPython | null,
): WorkerOptions {
  const python = resolveInterpreter(config.python, env.PATH, Boolean(env.ASYA_PYTHONEXECUTABLE?.trim()));
  return {
    python,
    shim: shimLaunch(),
    handler: config.handler,
    mode: config.mode,
    jsonCodec: config.jsonCodec,
    extraPath,
    handlerArgs: config.handlerArgs,
    timeoutSeconds: config.handlerTimeoutMs === null ? null : config.handlerTimeoutMs / 1000,
    log,
    logLevel: config.logLevel,
    early,
  };
}

/**
 * Start the runtime. Returns at once (so signal handlers can be installed before a handler's
 * long __init__); startup continues in the background and `done` resolves at exit.
 */
export function startRuntime(
  config: Config,
  log: Logger,
  { env, extraPath, early, terminal }: RuntimeOptions,
): RunningRuntime {
  log.info(
    {
      version: VERSION,
      node: process.versions.node,
      handler: config.handler,
      from: config.handlerVariable,
      mode: config.mode,
      validation: config.validate,
      include_metadata: config.includeMetadata,
      socket: config.socketPath,
      max_message_size: config.maxMessageSize,
      handler_timeout_s: config.handlerTimeoutMs === null ? null : config.handlerTimeoutMs / 1000,
      kill_grace_s: config.handlerTimeoutMs === null ? undefined : config.handlerKillGraceMs / 1000,
      worker_max_messages: config.workerMaxMessages ?? undefined,
      worker_max_memory: config.workerMaxMemory ?? undefined,
      workers: config.workers,
      preload: config.preload || undefined,
    },
    'starting Asya runtime',
  );
  tuneSupervisorMemory(env, process.execArgv);
  const messageMemory = new MessageMemory((freed) =>
    log.debug({ freed_mib: Math.round(freed / 2 ** 20) }, 'idle: collected dead message buffers'),
  );
  const ready = new ReadyFile(config.readyFile, log);
  let supervisor: Pool | null = null;
  /** ASYA_PRELOAD: the template workers are forked from. */
  let template: ForkStarter | null = null;
  /**
   * A forked worker's own load time is its fork's: what loading the handler took is its template's, the
   * figure `call` reports (init duration, --watch's RELOAD line), with the fork's as `fork_ms`.
   */
  const withLoadTime = (ready: ReadyInfo): ReadyInfo => {
    const loadedBy = ready.forked ? template?.loaded() : null;
    return loadedBy ? { ...ready, load_ms: loadedBy.load_ms, fork_ms: ready.load_ms } : ready;
  };
  /** Set in boot() when ASYA_METRICS_ADDR is: prom-client and node:http are loaded only then. */
  let metrics: RuntimeMetrics | null = null;
  let metricsServer: MetricsServer | null = null;

  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let serverUp = false;
  let workerUp = false;
  let stopping = false;
  let firstReady!: (ready: boolean) => void;
  const readyOnce = new Promise<boolean>((resolve) => (firstReady = resolve));
  void done.then(() => firstReady(false));
  let startupLogged = false;
  /** The last ready-file fault logged while stopping, so one cause is not logged twice. */
  let readyFault = '';
  // Called from the supervisor's hooks: it must never throw into them (a throw there once looked like
  // a failed Python start and started another interpreter next to the loaded one).
  const updateReady = () => {
    const up = serverUp && workerUp && !stopping;
    try {
      const lost = up ? server.socketProblem() : null;
      if (lost !== null) throw new FatalError(ExitCode.socket, lost);
      ready.set(up);
      metrics?.setReady(up);
    } catch (err) {
      const fatal =
        err instanceof FatalError
          ? err
          : new FatalError(ExitCode.socket, `ready file ${ready.path}: ${(err as Error).message}`);
      if (!stopping) return void stop(fatal);
      if (fatal.message !== readyFault) log.error({ ...fatal.fields }, fatal.message);
      readyFault = fatal.message;
      return;
    }
    if (up && !startupLogged) {
      startupLogged = true;
      logStartup(log, supervisor?.loaded ?? null);
      const tiering = optimiseHotPathEarly(process.execArgv);
      if (tiering.length > 0)
        log.debug({ flags: tiering, v8: process.versions.v8 }, 'V8 tiering set for the per-message path');
    }
    if (up) firstReady(true);
  };

  /**
   * While the runtime runs, someone may remove its socket file, its directory or its ready file
   * (an operator in the pod, a cleanup script). A lost socket cannot be served again: exit 5 and
   * let Kubernetes restart the container; a lost ready file is put back. The directory is watched
   * (inotify): the check runs when an entry in it changes, so an idle runtime does not wake up for
   * it. Where watching is refused (no inotify, or its limit reached), it is polled once a second.
   */
  let watch: { close(): void } | null = null;
  const checkFiles = () => {
    if (stopping) return;
    const lost = server.socketProblem();
    if (lost !== null) return void stop(new FatalError(ExitCode.socket, lost));
    try {
      ready.restoreIfMissing();
    } catch (err) {
      void stop(err as FatalError);
    }
  };
  const pollFiles = () => {
    const timer = setInterval(checkFiles, WATCH_INTERVAL_MS);
    timer.unref();
    watch = { close: () => clearInterval(timer) };
  };
  const watchFiles = () => {
    try {
      const watcher = fs.watch(config.socketDir, { persistent: false }, checkFiles);
      watcher.on('error', () => {
        watcher.close();
        if (stopping) return;
        pollFiles();
        checkFiles();
      });
      watch = watcher;
    } catch (err) {
      log.debug({ err }, 'cannot watch the socket directory; checking it once a second');
      pollFiles();
    }
  };

  const server = new SocketServer(config, log, (frame, exchange) => {
    const received = process.hrtime.bigint();
    try {
      const envelope = parseRequest(frame, config.validate);
      if (supervisor) supervisor.submit({ envelope, exchange, received });
      else exchange.abort();
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      log.warn({ error: err.code, bytes: frame.length }, err.message);
      metrics?.refused(err.code);
      exchange.respond(errorResponse(err));
    }
  });

  const stop = async (cause: FatalError | string, graceMs = config.shutdownTimeoutMs): Promise<number> => {
    if (stopping) return done;
    stopping = true;
    watch?.close();
    messageMemory.stop();
    updateReady();
    server.stopAccepting();
    if (cause instanceof FatalError) {
      logFatal(log, cause);
      await supervisor?.shutdown(0);
    } else {
      log.info({ reason: cause, grace_s: graceMs / 1000 }, 'shutting down');
      const { unfinished } = (await supervisor?.shutdown(graceMs)) ?? { unfinished: 0 };
      if (unfinished > 0 && graceMs === 0)
        log.info({ unfinished }, 'stopped without waiting for the messages in flight');
      else if (unfinished > 0)
        log.warn(
          { unfinished },
          'closed unfinished messages without an answer at the end of the grace period; the sidecar will retry them',
        );
    }
    await early?.discard(); // stopped before the first worker took it
    server.removeSocketFile();
    updateReady(); // a second try, if the first failed
    const code = cause instanceof FatalError ? cause.exitCode : ExitCode.ok;
    metrics?.setReady(false);
    await metricsServer?.close();
    log.info({ exit_code: code }, 'stopped');
    finish(code);
    return code;
  };

  const boot = async () => {
    try {
      // Before the socket: without Python there is nothing to serve.
      const options = workerOptions(config, env, log, extraPath, early);
      options.onCallWritten = (bytes) => messageMemory.request(bytes);
      options.terminal = terminal ?? null;
      // In a pool, what each Python process prints names its worker as the supervisor's lines do.
      const optionsOf = (worker: number) => (config.workers > 1 ? { ...options, log: log.child({ worker }) } : options);
      // prom-client and node:http are loaded only when metrics are on: at every start they cost the
      // single executable ~90 ms of CPU (docs/performance.md, "Cold start").
      const metricsModule = config.metrics ? await import('./metrics.js') : null;
      if (metricsModule) {
        const created = new metricsModule.RuntimeMetrics({
          queued: () => supervisor?.queued ?? 0,
          pythonPids: () => supervisor?.pythonPids ?? [],
          workersServing: () => supervisor?.serving ?? 0,
        });
        metrics = created;
        server.onRefused = (code) => created.refused(code);
        options.onMetrics = (updates) => created.handler(updates, log);
        options.metricKinds = () => created.handlerKinds();
      }
      if (config.preload) template = forkStarter(options, optionsOf, log);
      supervisor = new Pool(
        config,
        policyFromConfig(config),
        template ??
          ((worker) => {
            const own = optionsOf(worker);
            return () => PythonWorker.spawn(own);
          }),
        log,
        {
          onReady: (up) => {
            workerUp = up;
            updateReady();
          },
          onFatal: (err) => void stop(err),
        },
        metrics?.events ?? null,
        config.logMessages,
      );
      if (metricsModule && metrics && config.metrics) {
        metricsServer = await metricsModule.serveMetrics(
          metrics.registry,
          config.metrics,
          env.ASYA_METRICS_ADDR ?? '',
          log,
        );
        if (stopping) await metricsServer.close();
      }
      await server.listen();
      if (stopping) return server.stopAccepting(); // a signal arrived while binding
      // Only now is the directory this runtime's: a second runtime refused above must not touch
      // the first one's ready file.
      ready.clearStale();
      serverUp = true;
      mark('listening');
      watchFiles();
      mark('init_sent');
      await supervisor.start(); // readiness follows through onReady
    } catch (err) {
      if (stopping) return; // shut down during startup: the handler load was cut short on purpose
      const fatal = err instanceof FatalError ? err : new FatalError(ExitCode.handler, (err as Error).message);
      await stop(fatal);
    }
  };
  void boot();
  return {
    done,
    ready: readyOnce,
    shutdown: (reason, graceMs) => stop(reason, graceMs),
    loaded: () => {
      const loaded = supervisor?.loaded;
      return loaded ? withLoadTime(loaded) : null;
    },
    reload: async (reason) => {
      if (!supervisor || stopping) throw new FatalError(ExitCode.ok, 'the runtime is stopping');
      return withLoadTime(await supervisor.reload(reason));
    },
  };
}

/**
 * Once, when the runtime is first ready: how long after exec, and the phases (ms since exec) of Node
 * and of the Python process that loaded the handler (its clock stamps, on the same wall clock).
 */
function logStartup(log: Logger, loaded: ReadyInfo | null): void {
  for (const [phase, seconds] of Object.entries(loaded?.startup ?? {})) markAt(`python_${phase}`, seconds * 1000);
  mark('ready');
  const phases = startupMarks();
  log.info({ startup_ms: phases }, `started in ${Math.round(phases.ready ?? 0)} ms`);
}

/** ASYA_PRELOAD: one template loads the handler; every worker (and every replacement) is forked from it. */
interface ForkStarter extends WorkerStarter {
  /** What the template now serving reported when it loaded the handler. */
  loaded(): ReadyInfo | null;
}

function forkStarter(options: WorkerOptions, optionsOf: (worker: number) => WorkerOptions, log: Logger): ForkStarter {
  const template = new Template(options, log);
  return {
    factory: (worker) => template.factory(optionsOf(worker)),
    stop: (graceMs) => template.stop(graceMs),
    reload: () => template.reload(),
    loaded: () => template.loaded,
  };
}
