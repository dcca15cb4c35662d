/**
 * The runtime's lifecycle: configuration in, socket up, handler loaded, ready file written,
 * serve until SIGTERM/SIGINT, then drain and clean up. Every way out is one log line and an
 * exit code.
 */
import type { Config } from './config.js';
import { parseRequest } from './envelope.js';
import { errorResponse } from './envelope.js';
import { ExitCode, FatalError, WireError } from './errors.js';
import { tuneSupervisorMemory } from './heap.js';
import { collectWhenIdle } from './idle-gc.js';
import { resolveInterpreter } from './interpreter.js';
import type { Logger } from './logger.js';
import { ReadyFile } from './readiness.js';
import { SocketServer } from './server.js';
import { shimArguments } from './shim.js';
import { Supervisor } from './supervisor.js';
import type { WorkerOptions } from './worker.js';

export interface RunningRuntime {
  /** Resolves with the exit code once the runtime has stopped. */
  done: Promise<number>;
  /** Resolves true when the runtime first becomes ready, false if it stops before that. */
  ready: Promise<boolean>;
  shutdown(reason: string): Promise<number>;
}

export interface RuntimeOptions {
  /** The environment `config` was parsed from: it also decides how the interpreter is looked up and reported. */
  env: NodeJS.ProcessEnv;
  /** Directories put in front of the handler's sys.path (`asya-runtime call` adds the working directory). */
  extraPath?: string[];
}

/**
 * How to start the Python worker for this configuration. Finds the interpreter first, so a
 * missing Python is a FatalError before anything else happens; shared by `serve` and `check`
 * so both load the handler the same way.
 */
export function workerOptions(config: Config, env: NodeJS.ProcessEnv, log: Logger, extraPath?: string[]): WorkerOptions {
  const python = resolveInterpreter(config.python, env.PATH, Boolean(env.ASYA_PYTHONEXECUTABLE?.trim()));
  return { python, shimArgs: shimArguments(), handler: config.handler, mode: config.mode, jsonCodec: config.jsonCodec, extraPath, log };
}

/**
 * Start the runtime. Returns at once (so signal handlers can be installed before a handler's
 * long __init__); startup continues in the background and `done` resolves at exit.
 */
export function startRuntime(config: Config, log: Logger, { env, extraPath }: RuntimeOptions): RunningRuntime {
  log.info(
    {
      handler: config.handler,
      from: config.handlerVariable,
      mode: config.mode,
      validation: config.validate,
      include_metadata: config.includeMetadata,
      socket: config.socketPath,
      max_message_size: config.maxMessageSize,
      handler_timeout_s: config.handlerTimeoutMs === null ? null : config.handlerTimeoutMs / 1000,
    },
    'starting Asya runtime',
  );
  tuneSupervisorMemory(env, process.execArgv);
  collectWhenIdle((freed) => log.debug({ freed_mib: Math.round(freed / 2 ** 20) }, 'idle: collected dead message buffers'));
  const ready = new ReadyFile(config.readyFile, log);
  ready.clearStale();

  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let serverUp = false;
  let workerUp = false;
  let stopping = false;
  let firstReady!: (ready: boolean) => void;
  const readyOnce = new Promise<boolean>((resolve) => (firstReady = resolve));
  void done.then(() => firstReady(false));
  const updateReady = () => {
    const up = serverUp && workerUp && !stopping;
    ready.set(up);
    if (up) firstReady(true);
  };

  let supervisor: Supervisor | null = null;
  const server = new SocketServer(config, log, (frame, exchange) => {
    const received = process.hrtime.bigint();
    try {
      const envelope = parseRequest(frame, config.validate);
      if (supervisor) supervisor.submit({ envelope, exchange, received });
      else exchange.abort();
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      log.warn({ error: err.code, bytes: frame.length }, err.message);
      exchange.respond(errorResponse(err));
    }
  });

  const stop = async (cause: FatalError | string): Promise<number> => {
    if (stopping) return done;
    stopping = true;
    updateReady();
    server.stopAccepting();
    if (cause instanceof FatalError) {
      log.fatal({ exit_code: cause.exitCode, ...cause.fields }, `FATAL: ${cause.message}`);
      await supervisor?.shutdown(0);
    } else {
      log.info({ reason: cause, grace_s: config.shutdownTimeoutMs / 1000 }, 'shutting down');
      const { unfinished } = (await supervisor?.shutdown(config.shutdownTimeoutMs)) ?? { unfinished: 0 };
      if (unfinished > 0) log.warn({ unfinished }, 'closed unfinished messages without an answer at the end of the grace period; the sidecar will retry them');
    }
    server.removeSocketFile();
    ready.set(false);
    const code = cause instanceof FatalError ? cause.exitCode : ExitCode.ok;
    log.info({ exit_code: code }, 'stopped');
    finish(code);
    return code;
  };

  const boot = async () => {
    try {
      // Before the socket: without Python there is nothing to serve.
      supervisor = new Supervisor(
        config,
        workerOptions(config, env, log, extraPath),
        log,
        {
          onReady: (up) => {
            workerUp = up;
            updateReady();
          },
          onFatal: (err) => void stop(err),
        },
      );
      await server.listen();
      if (stopping) return server.stopAccepting(); // a signal arrived while binding
      serverUp = true;
      await supervisor.start(); // readiness follows through onReady
    } catch (err) {
      if (stopping) return; // shut down during startup: the handler load was cut short on purpose
      const fatal = err instanceof FatalError ? err : new FatalError(ExitCode.handler, (err as Error).message);
      await stop(fatal);
    }
  };
  void boot();
  return { done, ready: readyOnce, shutdown: (reason) => stop(reason) };
}
