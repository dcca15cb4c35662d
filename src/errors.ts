/**
 * Every error the runtime can put on the wire or exit with, defined in one place.
 *
 * Wire errors travel to the sidecar as `[{"error": code, "details": {message, type, traceback}}]`;
 * the Go sidecar routes anything with a non-empty `error` to error-end.
 */

export const ErrorCode = {
  /** The handler raised, broke the envelope-mode rules, or returned something not encodable as JSON. */
  processing: 'processing_error',
  /** The request frame is not a valid envelope. */
  parsing: 'msg_parsing_error',
  /** The request could not be read (client closed mid-frame, read timeout). */
  connection: 'connection_error',
  /** The length prefix is over ASYA_MAX_MESSAGE_SIZE; the body was not read. */
  tooLarge: 'message_too_large',
  /**
   * The handler ran longer than ASYA_HANDLER_TIMEOUT: it was interrupted inside Python (the process and
   * its model stay), or, still running ASYA_HANDLER_KILL_GRACE later, its process was killed and restarted.
   */
  timeout: 'handler_timeout',
  /** The Python process died while handling the message (segfault, os._exit, OOM kill). */
  crashed: 'worker_crashed',
  /** The envelope's `deadline` had passed when the message was to be handled: the handler was not called. */
  deadline: 'deadline_exceeded',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorDetails {
  message: string;
  /** An exception class name: the handler's own for Python errors, a Python-like name otherwise. */
  type: string;
  traceback: string;
  /** Extra facts for operators (exit code, signal, limits); optional, never required by the sidecar. */
  [extra: string]: unknown;
}

/** An error answer for one message. Thrown or returned anywhere on the request path. */
export class WireError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, details: Partial<ErrorDetails> & { message: string }) {
    super(details.message);
    this.name = 'WireError';
    this.code = code;
    const { message, type = 'RuntimeError', traceback = '', ...extra } = details;
    this.details = { message, type, traceback, ...extra };
  }

  /** The JSON text of the one-element response array. */
  toJSON(): Array<{ error: ErrorCode; details: ErrorDetails }> {
    return [{ error: this.code, details: this.details }];
  }
}

export const wireError = {
  parsing: (message: string, type = 'ValueError') => new WireError(ErrorCode.parsing, { message, type }),
  connection: (message: string) => new WireError(ErrorCode.connection, { message, type: 'ConnectionError' }),
  tooLarge: (size: number, limit: number) =>
    new WireError(ErrorCode.tooLarge, {
      message: `request frame of ${size} bytes exceeds ASYA_MAX_MESSAGE_SIZE=${limit}; the body was not read`,
      type: 'MessageTooLarge',
      size,
      limit,
    }),
  /** Soft stage: the handler was interrupted and ended (raising `type`, or returning anyway); the process stays. */
  interrupted: (seconds: number, graceSeconds: number, ended: { type: string; traceback: string; returned: boolean }) =>
    new WireError(ErrorCode.timeout, {
      message:
        `handler did not return within ASYA_HANDLER_TIMEOUT=${seconds}s: it was interrupted ` +
        (ended.returned
          ? 'and returned afterwards (its result was discarded)'
          : ended.type === 'HandlerTimeout'
            ? '(HandlerTimeout raised in it)'
            : `and ended with ${ended.type}`) +
        '; the Python process and its loaded handler stay',
      type: 'HandlerTimeout',
      traceback: ended.traceback,
      timeout_seconds: seconds,
      kill_grace_seconds: graceSeconds,
      killed: false,
    }),
  /** Hard stage: still running ASYA_HANDLER_KILL_GRACE after the interruption; the process was killed. */
  timeout: (seconds: number, graceSeconds: number) =>
    new WireError(ErrorCode.timeout, {
      message:
        `handler did not return within ASYA_HANDLER_TIMEOUT=${seconds}s, nor within ASYA_HANDLER_KILL_GRACE=${graceSeconds}s ` +
        'of being interrupted: the Python process was killed and is being restarted',
      type: 'HandlerTimeout',
      timeout_seconds: seconds,
      kill_grace_seconds: graceSeconds,
      killed: true,
    }),
  crashed: (exitCode: number | null, signal: string | null, stderrTail: string) =>
    new WireError(ErrorCode.crashed, {
      message:
        `the Python process died while handling this message (` +
        (signal ? `killed by ${signal}` : `exit code ${exitCode}`) +
        `); it is being restarted`,
      type: 'WorkerCrashed',
      traceback: stderrTail,
      exit_code: exitCode,
      signal,
    }),
  processing: (message: string, type = 'ValueError', traceback = '') =>
    new WireError(ErrorCode.processing, { message, type, traceback }),
  deadlineExceeded: (deadline: string, missedSeconds: number) =>
    new WireError(ErrorCode.deadline, {
      message: `the message's deadline ${deadline} had passed ${missedSeconds.toFixed(3)} s before its handler would have run; it was not called`,
      type: 'DeadlineExceeded',
      deadline,
      missed_seconds: Number(missedSeconds.toFixed(3)),
    }),
};

/** A reason the runtime cannot start or keep running. Logged as one FATAL line, then exit(code). */
export class FatalError extends Error {
  readonly exitCode: number;
  readonly fields: Record<string, unknown>;

  constructor(exitCode: number, message: string, fields: Record<string, unknown> = {}) {
    super(message);
    this.name = 'FatalError';
    this.exitCode = exitCode;
    this.fields = fields;
  }
}

/** Process exit codes, so `kubectl describe pod` tells which kind of failure it was. */
export const ExitCode = {
  ok: 0,
  /** A second SIGTERM/SIGINT during shutdown (exit at once), or an internal error: the last log line says which. */
  abrupt: 1,
  /** An environment variable has a value the runtime does not accept. */
  config: 2,
  /** The Python interpreter was not found or could not be started. */
  interpreter: 3,
  /** The handler could not be imported or instantiated. */
  handler: 4,
  /** The socket could not be created, bound or chmod-ed. */
  socket: 5,
  /** The Python process kept failing to re-initialise after crashes. */
  restarts: 6,
} as const;
