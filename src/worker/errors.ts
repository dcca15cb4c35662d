/**
 * How a worker fails, as values: it died (and why), its handler did not load, or the operating system
 * refused to start it; and the one translation of any of them into the runtime's FatalError.
 */
import { ExitCode, FatalError } from '../errors.js';

/** `corrupt`: it wrote something on the channel that no shim writes, so it was killed. */
export type DeathReason = 'crash' | 'timeout' | 'stopped' | 'corrupt';

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
        (reason === 'timeout'
          ? ' after the handler time limit'
          : reason === 'corrupt'
            ? ' after it corrupted its channel'
            : ''),
    );
    this.name = 'WorkerDied';
  }
}

/** Which Python said it, as the shim reports it: `sys.version` and `sys.executable`. */
export interface Interpreter {
  python: string;
  executable: string;
}

/** The shim started but could not load the handler. */
export class HandlerLoadFailed extends Error {
  constructor(
    message: string,
    readonly type: string,
    readonly traceback: string,
    readonly interpreter: Interpreter | null = null,
  ) {
    super(message);
    this.name = 'HandlerLoadFailed';
  }
}

/** The operating system refused to start the process (no process was created). */
export class SpawnFailed extends Error {
  constructor(
    /** The errno name: EMFILE, ENFILE, EAGAIN, ENOENT, EACCES, ... */
    readonly code: string,
    python: string,
    cause: string,
  ) {
    super(`${code} starting ${python}: ${cause}`);
    this.name = 'SpawnFailed';
  }

  /**
   * Out of descriptors (this process's or the system's) or of processes: the environment's state,
   * which passes, not a sign that the handler no longer loads.
   */
  get transient(): boolean {
    return this.code === 'EMFILE' || this.code === 'ENFILE' || this.code === 'EAGAIN';
  }
}

/** What each refusal means, in the FATAL line or the retry warning. */
export const SPAWN_ERRORS: Record<string, string> = {
  EMFILE: "the supervisor has reached its limit of open files (RLIMIT_NOFILE, 'ulimit -n')",
  ENFILE: 'the system has reached its limit of open files',
  EAGAIN: 'the limit of processes has been reached',
  ENOENT: 'no such file',
  EACCES: 'permission denied',
};

/**
 * Any failure to start or load a worker, as the FATAL reason the runtime exits with. A load failure
 * names the interpreter it happened in (version and path, or the configured command when the process
 * never said), since "works on my machine" is most often another Python.
 */
export function toFatal(err: unknown, { handler, python }: { handler: string; python: string }): FatalError {
  if (err instanceof FatalError) return err;
  if (err instanceof HandlerLoadFailed) {
    const by = err.interpreter ? `Python ${err.interpreter.python} at ${err.interpreter.executable}` : python;
    return new FatalError(ExitCode.handler, `cannot load handler ${JSON.stringify(handler)}: ${err.message} [${by}]`, {
      type: err.type,
      traceback: err.traceback || undefined,
      python: err.interpreter?.executable ?? python,
      python_version: err.interpreter?.python,
    });
  }
  if (err instanceof WorkerDied) {
    const tail = err.stderrTail ? `; its last output:\n${err.stderrTail}` : '';
    return new FatalError(
      ExitCode.handler,
      `the Python process (${python}) ended before loading handler ${JSON.stringify(handler)} (${err.message})${tail}`,
      { python },
    );
  }
  return new FatalError(ExitCode.handler, `cannot start the Python process: ${(err as Error).message}`);
}
