/**
 * Configuration: every ASYA_* variable parsed once, at start, into one typed object.
 *
 * A value the runtime does not understand is a startup error naming the variable and the
 * rejected value, never a silent default.
 */
import path from 'node:path';
import * as z from 'zod/mini';

export const HANDLER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/;
const LEGACY_MODULE_PATTERN = /^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::([A-Za-z_][A-Za-z0-9_]*))?$/;

export type HandlerMode = 'payload' | 'envelope';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** `auto`: human-readable lines when stderr is a terminal, JSON lines otherwise. */
export type LogFormat = 'auto' | 'json' | 'pretty';
export type JsonCodec = 'auto' | 'json' | 'orjson';

export interface Config {
  /** `module.function` or `module.Class.method`. */
  handler: string;
  /** Which variable the handler came from, for messages. */
  handlerVariable: 'ASYA_HANDLER' | 'ASYA_PROCESS_MODULE';
  mode: HandlerMode;
  /** A name looked up on PATH, or a path. */
  python: string;
  socketPath: string;
  /** Holds the socket and the ready file. */
  socketDir: string;
  readyFile: string;
  /** null: leave the socket's mode as created. */
  socketChmod: number | null;
  validate: boolean;
  includeMetadata: boolean;
  /** Accepted for compatibility with the upstream runtime; Node sizes its own reads. */
  chunkSize: number;
  maxMessageSize: number;
  logLevel: LogLevel;
  /** ASYA_LOG_FORMAT: JSON or human-readable lines, whatever stderr is; unset: by terminal. */
  logFormat: LogFormat;
  jsonCodec: JsonCodec;
  /** null: no limit. The soft stage: the handler is interrupted inside Python. */
  handlerTimeoutMs: number | null;
  /** The hard stage: how long after the interruption the process is killed. */
  handlerKillGraceMs: number;
  /** JSON text of an object: keyword arguments for the class handler's constructor; null: none. */
  handlerArgs: string | null;
  /** Replace the Python process after this many messages; null: never. */
  workerMaxMessages: number | null;
  /** Replace it when its resident memory exceeds this many bytes; null: never. */
  workerMaxMemory: number | null;
  /** Python processes, each with the handler loaded, serving concurrent connections (ASYA_WORKERS). */
  workers: number;
  /** Load the handler once in a template and fork every worker from it (ASYA_PRELOAD). */
  preload: boolean;
  readTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** One INFO line per answered message (ASYA_LOG_MESSAGES); at DEBUG when false. */
  logMessages: boolean;
  /** Where to serve Prometheus metrics (`/metrics`); null: off. */
  metrics: MetricsAddress | null;
}

export interface MetricsAddress {
  /** undefined: every interface. */
  host: string | undefined;
  /** 0: any free port (the log line says which). */
  port: number;
}

export const DEFAULTS = {
  socketDir: '/var/run/asya',
  socketName: 'asya-runtime.sock',
  socketChmod: '0o666',
  python: 'python3',
  chunkSize: 65536,
  maxMessageSize: 64 * 1024 * 1024,
  readTimeoutSeconds: 30,
  shutdownTimeoutSeconds: 25,
  killGraceSeconds: 5,
  workers: 1,
} as const;

/**
 * More Python processes than this is a typo (640 for 64), not a plan: each holds a copy of the model,
 * and the supervisor's descriptors and restart headroom are sized for a few dozen.
 */
export const MAX_WORKERS = 64;

/** An unset or empty variable takes the default, as in the upstream runtime. */
const trimmed = (v: string | undefined): string | undefined =>
  v === undefined || v.trim() === '' ? undefined : v.trim();

/**
 * One variable of the schema: unset or empty gives `fallback`; otherwise `read` gives the value, or
 * undefined when it is not one, and the issue says what was `expected` (the message names the
 * variable, from the schema's key, and quotes the value: see `describeIssue`).
 */
function variable<T, F>(fallback: F, expected: string, read: (value: string) => T | undefined) {
  return z.pipe(
    z.optional(z.string()),
    z.transform((raw: string | undefined, ctx): T | F => {
      const v = trimmed(raw);
      if (v === undefined) return fallback;
      const value = read(v);
      if (value !== undefined) return value;
      ctx.issues.push({ code: 'custom', message: expected, input: v });
      return z.NEVER;
    }),
  );
}

function text() {
  return variable(undefined, 'text', (v) => v);
}

function oneOf<T extends string>(choices: Record<string, T>, fallback: T) {
  return variable(fallback, `${Object.keys(choices).join(', ')} (any case)`, (v) => choices[v.toLowerCase()]);
}

const YES_NO: Record<string, boolean> = { true: true, '1': true, yes: true, false: false, '0': false, no: false };

function boolean(fallback: boolean) {
  return variable(fallback, `${Object.keys(YES_NO).join(', ')} (any case)`, (v) => YES_NO[v.toLowerCase()]);
}

function integer<F extends number | null>(fallback: F, min: number, max: number) {
  return variable(fallback, `an integer from ${min} to ${max}`, (v) => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
  });
}

/**
 * The longest time limit the runtime can honour: Node's timers hold a signed 32-bit number of
 * milliseconds, and a longer delay fires after 1 ms instead (every message would time out).
 */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

export const SECONDS_EXPECTED = `a positive number of seconds up to ${MAX_TIMER_SECONDS} (24.8 days, the longest timer Node.js can set), e.g. 30 or 2.5`;

/**
 * The one reading of a number of seconds, for variables and command-line flags alike: decimals
 * allowed, no exponent or sign, positive, at most MAX_TIMER_SECONDS. Milliseconds, or null.
 */
export function parseSeconds(text: string): number | null {
  const n = /^\d+(\.\d+)?$|^\.\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  return n > 0 && n <= MAX_TIMER_SECONDS ? Math.round(n * 1000) || 1 : null;
}

/** Seconds, decimals allowed, as milliseconds. */
function seconds<F extends number | null>(fallbackMs: F) {
  return variable(fallbackMs, SECONDS_EXPECTED, (v) => parseSeconds(v) ?? undefined);
}

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  ki: 1024,
  mib: 1024 ** 2,
  mi: 1024 ** 2,
  gib: 1024 ** 3,
  gi: 1024 ** 3,
};

/** A size in bytes, or with a binary unit: 2147483648, 512MiB, 1.5 GiB (Kubernetes' 2Gi too). */
function byteSize() {
  return variable(null, 'a number of bytes, or with KiB, MiB or GiB (e.g. 2147483648, 512MiB, 1.5GiB)', (v) => {
    const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(v);
    const unit = m ? BYTE_UNITS[(m[2] || 'b').toLowerCase()] : undefined;
    const n = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
    return n >= 1 && Number.isSafeInteger(n) ? n : undefined;
  });
}

const KWARGS_EXAMPLE = 'a JSON object of keyword arguments, e.g. {"model_path": "/models/m.bin"}';

/** Keyword arguments for a constructor: the text of a JSON object, passed to Python as it is. */
function jsonObject() {
  return z.pipe(
    z.optional(z.string()),
    z.transform((raw: string | undefined, ctx): string | null => {
      const v = trimmed(raw);
      if (v === undefined) return null;
      let parsed: unknown;
      try {
        parsed = JSON.parse(v);
      } catch (err) {
        ctx.issues.push({ code: 'custom', message: `${KWARGS_EXAMPLE} (${(err as Error).message})`, input: v });
        return z.NEVER;
      }
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return v;
      ctx.issues.push({ code: 'custom', message: KWARGS_EXAMPLE, input: v });
      return z.NEVER;
    }),
  );
}

/** `:9464`, `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`. */
const METRICS_ADDRESS = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/;

export function parseMetricsAddress(value: string): MetricsAddress | null {
  const m = METRICS_ADDRESS.exec(value);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2];
  return { host: host === '' || host === undefined ? undefined : host, port };
}

/** Written beside the socket; the pod's probe tests it. */
const READY_FILE_NAME = 'runtime-ready';

/** sun_path holds 108 bytes with the terminating NUL; Node would bind a silently truncated path. */
export const SOCKET_PATH_MAX_BYTES = 107;

/**
 * Every variable, its type, default and rule: the table of the runtime's configuration. Read in this
 * order (the order of the messages when several are wrong).
 */
const VARIABLES = z.object({
  ASYA_HANDLER: text(),
  ASYA_PROCESS_MODULE: text(),
  ASYA_HANDLER_MODE: oneOf<HandlerMode>({ payload: 'payload', envelope: 'envelope' }, 'payload'),
  ASYA_PYTHONEXECUTABLE: variable(DEFAULTS.python, 'a command or path', (v) => v),
  ASYA_SOCKET_DIR: variable(DEFAULTS.socketDir, 'a directory', (v) => v),
  ASYA_SOCKET_NAME: variable(
    DEFAULTS.socketName,
    `a file name without "/", other than ".", ".." and "${READY_FILE_NAME}" (the ready file's)`,
    (v) => (v.includes('/') || v === '.' || v === '..' || v === READY_FILE_NAME ? undefined : v),
  ),
  ASYA_SOCKET_PATH: text(),
  // Not `variable`: an empty ASYA_SOCKET_CHMOD is meaningful (leave the mode alone).
  ASYA_SOCKET_CHMOD: z.pipe(
    z.optional(z.string()),
    z.transform((raw: string | undefined, ctx): number | null => {
      const v = (raw ?? DEFAULTS.socketChmod).trim();
      if (v === '') return null;
      // Permission bits only: setuid, setgid and sticky mean nothing on a socket (0o7777 made it srwsrwsrwt).
      const m = /^(?:0o|0)?([0-7]{3,4})$/i.exec(v);
      const mode = m?.[1] === undefined ? NaN : parseInt(m[1], 8);
      if (mode <= 0o777) return mode;
      ctx.issues.push({
        code: 'custom',
        message: 'an octal mode of permission bits such as 0o660, 0660 or 660 (at most 0o777), or empty to skip',
        input: v,
      });
      return z.NEVER;
    }),
  ),
  ASYA_ENABLE_VALIDATION: boolean(true),
  ASYA_INCLUDE_METADATA: boolean(false),
  ASYA_CHUNK_SIZE: integer(DEFAULTS.chunkSize, 1, 2 ** 31 - 1),
  ASYA_LOG_MESSAGES: boolean(true),
  ASYA_METRICS_ADDR: variable(
    null,
    "[host]:port, e.g. ':9464' (every interface) or '127.0.0.1:9464', port 0 to 65535",
    (v) => parseMetricsAddress(v) ?? undefined,
  ),
  ASYA_MAX_MESSAGE_SIZE: integer(DEFAULTS.maxMessageSize, 1, 2 ** 32 - 1),
  ASYA_LOG_LEVEL: oneOf<LogLevel>(
    { debug: 'debug', info: 'info', warning: 'warn', warn: 'warn', error: 'error', critical: 'error' },
    'info',
  ),
  ASYA_LOG_FORMAT: oneOf<LogFormat>({ json: 'json', pretty: 'pretty' }, 'auto'),
  ASYA_JSON_CODEC: oneOf<JsonCodec>({ auto: 'auto', json: 'json', orjson: 'orjson' }, 'auto'),
  ASYA_HANDLER_TIMEOUT: seconds(null),
  ASYA_READ_TIMEOUT: seconds(DEFAULTS.readTimeoutSeconds * 1000),
  ASYA_SHUTDOWN_TIMEOUT: seconds(DEFAULTS.shutdownTimeoutSeconds * 1000),
  ASYA_HANDLER_KILL_GRACE: seconds(DEFAULTS.killGraceSeconds * 1000),
  ASYA_HANDLER_ARGS: jsonObject(),
  ASYA_WORKER_MAX_MESSAGES: integer(null, 1, Number.MAX_SAFE_INTEGER),
  ASYA_WORKER_MAX_MEMORY: byteSize(),
  ASYA_WORKERS: integer(DEFAULTS.workers, 1, MAX_WORKERS),
  ASYA_PRELOAD: boolean(false),
});

type Variables = z.infer<typeof VARIABLES>;

/** Every variable the configuration reads (test/catalogue.test.ts holds them against docs/configuration.md). */
export const VARIABLE_NAMES: readonly string[] = Object.keys(VARIABLES.shape);

/** The message of a rejected variable: its name, the value quoted, and what was expected. */
function invalid(name: string, value: unknown, expected: string): string {
  return `${name}=${JSON.stringify(value)} is not valid: expected ${expected}`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  return invalid(String(issue.path[0]), issue.input, issue.message);
}

/** Each variable on its own; null when any was rejected (its issues are in `issues`). */
function readVariables(env: NodeJS.ProcessEnv, issues: string[]): Variables | null {
  const read = VARIABLES.safeParse(env, { reportInput: true });
  if (read.success) return read.data;
  issues.push(...read.error.issues.map(describeIssue));
  return null;
}

/**
 * Where the runtime's socket is: ASYA_SOCKET_PATH, else ASYA_SOCKET_NAME in ASYA_SOCKET_DIR (each
 * unset or empty variable taking its default). The one rule, for the runtime and for `send`.
 */
export function socketPathOf(env: {
  ASYA_SOCKET_PATH?: string | undefined;
  ASYA_SOCKET_DIR?: string | undefined;
  ASYA_SOCKET_NAME?: string | undefined;
}): string {
  const explicit = trimmed(env.ASYA_SOCKET_PATH);
  const dir = trimmed(env.ASYA_SOCKET_DIR) ?? DEFAULTS.socketDir;
  return path.resolve(explicit ?? path.join(dir, trimmed(env.ASYA_SOCKET_NAME) ?? DEFAULTS.socketName));
}

/** The ready file: beside the socket, whatever its name. */
export function readyFileOf(socketPath: string): string {
  return path.join(path.dirname(socketPath), READY_FILE_NAME);
}

/** What depends on several variables: checked only once each of them is valid on its own. */
function toConfig(env: Variables, issues: string[]): Config | null {
  const handler = resolveHandler(env.ASYA_HANDLER, env.ASYA_PROCESS_MODULE, issues);
  if (handler === null) return null;
  const socketPath = socketPathOf(env);
  const socketDir = path.dirname(socketPath);
  if (
    env.ASYA_SOCKET_PATH !== undefined &&
    (path.basename(socketPath) === READY_FILE_NAME || socketPath === path.sep)
  ) {
    issues.push(
      invalid(
        'ASYA_SOCKET_PATH',
        env.ASYA_SOCKET_PATH,
        `a socket file path whose name is not "${READY_FILE_NAME}" (the ready file beside it)`,
      ),
    );
    return null;
  }
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > SOCKET_PATH_MAX_BYTES) {
    const from =
      env.ASYA_SOCKET_PATH !== undefined
        ? `ASYA_SOCKET_PATH=${JSON.stringify(env.ASYA_SOCKET_PATH)}`
        : `ASYA_SOCKET_DIR=${JSON.stringify(env.ASYA_SOCKET_DIR)} and ASYA_SOCKET_NAME=${JSON.stringify(env.ASYA_SOCKET_NAME)}`;
    issues.push(
      `socket path ${JSON.stringify(socketPath)} (from ${from}) is ${bytes} bytes long (UTF-8); a Unix socket path ` +
        `can have at most ${SOCKET_PATH_MAX_BYTES} bytes: choose a shorter directory or name`,
    );
    return null;
  }
  return {
    handler: handler.spec,
    handlerVariable: handler.variable,
    mode: env.ASYA_HANDLER_MODE,
    python: env.ASYA_PYTHONEXECUTABLE,
    socketPath,
    socketDir,
    readyFile: readyFileOf(socketPath),
    socketChmod: env.ASYA_SOCKET_CHMOD,
    validate: env.ASYA_ENABLE_VALIDATION,
    includeMetadata: env.ASYA_INCLUDE_METADATA,
    chunkSize: env.ASYA_CHUNK_SIZE,
    maxMessageSize: env.ASYA_MAX_MESSAGE_SIZE,
    logLevel: env.ASYA_LOG_LEVEL,
    logFormat: env.ASYA_LOG_FORMAT,
    jsonCodec: env.ASYA_JSON_CODEC,
    handlerTimeoutMs: env.ASYA_HANDLER_TIMEOUT,
    readTimeoutMs: env.ASYA_READ_TIMEOUT,
    shutdownTimeoutMs: env.ASYA_SHUTDOWN_TIMEOUT,
    handlerKillGraceMs: env.ASYA_HANDLER_KILL_GRACE,
    handlerArgs: env.ASYA_HANDLER_ARGS,
    workerMaxMessages: env.ASYA_WORKER_MAX_MESSAGES,
    workerMaxMemory: env.ASYA_WORKER_MAX_MEMORY,
    workers: env.ASYA_WORKERS,
    preload: env.ASYA_PRELOAD,
    logMessages: env.ASYA_LOG_MESSAGES,
    metrics: env.ASYA_METRICS_ADDR,
  };
}

function resolveHandler(
  handler: string | undefined,
  legacy: string | undefined,
  issues: string[],
): { spec: string; variable: Config['handlerVariable'] } | null {
  if (handler !== undefined) {
    if (!HANDLER_PATTERN.test(handler)) {
      issues.push(
        invalid('ASYA_HANDLER', handler, "'module.function' or 'module.Class.method' (letters, digits, _ and dots)"),
      );
      return null;
    }
    return { spec: handler, variable: 'ASYA_HANDLER' };
  }
  if (legacy !== undefined) {
    const m = LEGACY_MODULE_PATTERN.exec(legacy);
    if (!m) {
      issues.push(invalid('ASYA_PROCESS_MODULE', legacy, "'module.path:function' or 'module.path'"));
      return null;
    }
    return { spec: `${m[1]}.${m[2] ?? 'process'}`, variable: 'ASYA_PROCESS_MODULE' };
  }
  issues.push(
    'ASYA_HANDLER is not set: set it to your handler, e.g. ASYA_HANDLER=my_module.process or my_module.MyClass.process',
  );
  return null;
}

export type ConfigResult =
  | { ok: true; config: Config }
  | { ok: false; errors: string[]; logLevel: LogLevel; logFormat: LogFormat };

/** Parse the environment. Returns every problem at once, so one restart fixes them all. */
export function parseConfig(env: NodeJS.ProcessEnv): ConfigResult {
  const issues: string[] = [];
  const variables = readVariables(env, issues);
  const config = variables && toConfig(variables, issues);
  if (config) return { ok: true, config };
  // The FATAL lines that say so are written at the level and in the format asked for, when those are valid.
  const level = VARIABLES.shape.ASYA_LOG_LEVEL.safeParse(env.ASYA_LOG_LEVEL);
  const format = VARIABLES.shape.ASYA_LOG_FORMAT.safeParse(env.ASYA_LOG_FORMAT);
  return {
    ok: false,
    errors: issues,
    logLevel: level.success ? level.data : 'info',
    logFormat: format.success ? format.data : 'auto',
  };
}
