/**
 * Configuration: every ASYA_* variable parsed once, at start, into one typed object.
 *
 * A value the runtime does not understand is a startup error naming the variable and the
 * rejected value, never a silent default.
 */
import path from 'node:path';

export const HANDLER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/;
const LEGACY_MODULE_PATTERN = /^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::([A-Za-z_][A-Za-z0-9_]*))?$/;

export type HandlerMode = 'payload' | 'envelope';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
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

/**
 * Reading one variable: its value, or an issue (a message naming the variable and quoting the value).
 * Plain functions rather than a schema library: zod did the same with custom messages everywhere, and
 * it was 600 of the 1 060 KiB the single executable bundled, and ~130 ms of
 * CPU at every start of `node dist/cli.js` (docs/performance.md, "Cold start").
 */
type Field<T> = (raw: string | undefined, issues: string[]) => T;

/** Reject with a message that names the variable and quotes the value. */
function reject(issues: string[], name: string, value: string, expected: string): never {
  issues.push(`${name}=${JSON.stringify(value)} is not valid: expected ${expected}`);
  return INVALID as never;
}

/** What a rejected field holds; the configuration is not built when any field was rejected. */
const INVALID = Symbol('invalid');

/** An unset or empty variable takes the default, as in the upstream runtime. */
const trimmed = (v: string | undefined): string | undefined =>
  v === undefined || v.trim() === '' ? undefined : v.trim();

function text(): Field<string | undefined> {
  return (raw) => trimmed(raw);
}

function oneOf<T extends string>(name: string, choices: Record<string, T>, fallback: T): Field<T> {
  return (raw, issues) => {
    const v = trimmed(raw);
    if (v === undefined) return fallback;
    const hit = choices[v.toLowerCase()];
    return hit ?? reject(issues, name, v, `${Object.keys(choices).join(', ')} (any case)`);
  };
}

function boolean(name: string, fallback: boolean): Field<boolean> {
  const choice = oneOf(name, { true: 'y', '1': 'y', yes: 'y', false: 'n', '0': 'n', no: 'n' }, fallback ? 'y' : 'n');
  return (raw, issues) => choice(raw, issues) === 'y';
}

function integer(name: string, fallback: number | null, min: number, max: number): Field<number | null> {
  return (raw, issues) => {
    const v = trimmed(raw);
    if (v === undefined) return fallback;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    return Number.isSafeInteger(n) && n >= min && n <= max
      ? n
      : reject(issues, name, v, `an integer from ${min} to ${max}`);
  };
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
function seconds(name: string, fallback: number | null): Field<number | null> {
  return (raw, issues) => {
    const v = trimmed(raw);
    if (v === undefined) return fallback === null ? null : fallback * 1000;
    return parseSeconds(v) ?? reject(issues, name, v, SECONDS_EXPECTED);
  };
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
function byteSize(name: string): Field<number | null> {
  return (raw, issues) => {
    const v = trimmed(raw);
    if (v === undefined) return null;
    const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(v);
    const unit = m ? BYTE_UNITS[(m[2] || 'b').toLowerCase()] : undefined;
    const n = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
    return n >= 1 && Number.isSafeInteger(n)
      ? n
      : reject(issues, name, v, 'a number of bytes, or with KiB, MiB or GiB (e.g. 2147483648, 512MiB, 1.5GiB)');
  };
}

/** Keyword arguments for a constructor: the text of a JSON object, passed to Python as it is. */
function jsonObject(name: string): Field<string | null> {
  return (raw, issues) => {
    const v = trimmed(raw);
    if (v === undefined) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch (err) {
      return reject(
        issues,
        name,
        v,
        `a JSON object of keyword arguments, e.g. {"model_path": "/models/m.bin"} (${(err as Error).message})`,
      );
    }
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? v
      : reject(issues, name, v, 'a JSON object of keyword arguments, e.g. {"model_path": "/models/m.bin"}');
  };
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

/** Every variable, read in this order (the order of the messages when several are wrong). */
const FIELDS = {
  ASYA_HANDLER: text(),
  ASYA_PROCESS_MODULE: text(),
  ASYA_HANDLER_MODE: oneOf('ASYA_HANDLER_MODE', { payload: 'payload', envelope: 'envelope' } as const, 'payload'),
  ASYA_PYTHONEXECUTABLE: (raw: string | undefined) => trimmed(raw) ?? DEFAULTS.python,
  ASYA_SOCKET_DIR: (raw: string | undefined) => trimmed(raw) ?? DEFAULTS.socketDir,
  ASYA_SOCKET_NAME: (raw: string | undefined, issues: string[]): string => {
    const v = trimmed(raw);
    return v === undefined
      ? DEFAULTS.socketName
      : v.includes('/') || v === '.' || v === '..' || v === READY_FILE_NAME
        ? reject(
            issues,
            'ASYA_SOCKET_NAME',
            v,
            `a file name without "/", other than ".", ".." and "${READY_FILE_NAME}" (the ready file's)`,
          )
        : v;
  },
  ASYA_SOCKET_PATH: text(),
  // Not `text()`: an empty ASYA_SOCKET_CHMOD is meaningful (leave the mode alone).
  ASYA_SOCKET_CHMOD: (raw: string | undefined, issues: string[]): number | null => {
    const v = (raw ?? DEFAULTS.socketChmod).trim();
    if (v === '') return null;
    // Permission bits only: setuid, setgid and sticky mean nothing on a socket (0o7777 made it srwsrwsrwt).
    const m = /^(?:0o|0)?([0-7]{3,4})$/i.exec(v);
    const mode = m?.[1] === undefined ? NaN : parseInt(m[1], 8);
    return mode <= 0o777
      ? mode
      : reject(
          issues,
          'ASYA_SOCKET_CHMOD',
          v,
          'an octal mode of permission bits such as 0o660, 0660 or 660 (at most 0o777), or empty to skip',
        );
  },
  ASYA_ENABLE_VALIDATION: boolean('ASYA_ENABLE_VALIDATION', true),
  ASYA_INCLUDE_METADATA: boolean('ASYA_INCLUDE_METADATA', false),
  ASYA_CHUNK_SIZE: integer('ASYA_CHUNK_SIZE', DEFAULTS.chunkSize, 1, 2 ** 31 - 1),
  ASYA_LOG_MESSAGES: boolean('ASYA_LOG_MESSAGES', true),
  ASYA_METRICS_ADDR: (raw: string | undefined, issues: string[]): MetricsAddress | null => {
    const v = trimmed(raw);
    if (v === undefined) return null;
    return (
      parseMetricsAddress(v) ??
      reject(
        issues,
        'ASYA_METRICS_ADDR',
        v,
        "[host]:port, e.g. ':9464' (every interface) or '127.0.0.1:9464', port 0 to 65535",
      )
    );
  },
  ASYA_MAX_MESSAGE_SIZE: integer('ASYA_MAX_MESSAGE_SIZE', DEFAULTS.maxMessageSize, 1, 2 ** 32 - 1),
  ASYA_LOG_LEVEL: oneOf(
    'ASYA_LOG_LEVEL',
    { debug: 'debug', info: 'info', warning: 'warn', warn: 'warn', error: 'error', critical: 'error' } as const,
    'info',
  ),
  ASYA_JSON_CODEC: oneOf('ASYA_JSON_CODEC', { auto: 'auto', json: 'json', orjson: 'orjson' } as const, 'auto'),
  ASYA_HANDLER_TIMEOUT: seconds('ASYA_HANDLER_TIMEOUT', null),
  ASYA_READ_TIMEOUT: seconds('ASYA_READ_TIMEOUT', DEFAULTS.readTimeoutSeconds),
  ASYA_SHUTDOWN_TIMEOUT: seconds('ASYA_SHUTDOWN_TIMEOUT', DEFAULTS.shutdownTimeoutSeconds),
  ASYA_HANDLER_KILL_GRACE: seconds('ASYA_HANDLER_KILL_GRACE', DEFAULTS.killGraceSeconds),
  ASYA_HANDLER_ARGS: jsonObject('ASYA_HANDLER_ARGS'),
  ASYA_WORKER_MAX_MESSAGES: integer('ASYA_WORKER_MAX_MESSAGES', null, 1, Number.MAX_SAFE_INTEGER),
  ASYA_WORKER_MAX_MEMORY: byteSize('ASYA_WORKER_MAX_MEMORY'),
  ASYA_WORKERS: integer('ASYA_WORKERS', DEFAULTS.workers, 1, MAX_WORKERS),
  ASYA_PRELOAD: boolean('ASYA_PRELOAD', false),
};

type Variables = { [K in keyof typeof FIELDS]: ReturnType<(typeof FIELDS)[K]> };

/** Each variable on its own; null when any was rejected (its issues are in `issues`). */
function readVariables(env: NodeJS.ProcessEnv, issues: string[]): Variables | null {
  const out: Record<string, unknown> = {};
  for (const [name, read] of Object.entries(FIELDS)) {
    out[name] = read(env[name], issues);
  }
  return issues.length === 0 ? (out as Variables) : null;
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
    reject(
      issues,
      'ASYA_SOCKET_PATH',
      env.ASYA_SOCKET_PATH,
      `a socket file path whose name is not "${READY_FILE_NAME}" (the ready file beside it)`,
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
    readyFile: path.join(socketDir, READY_FILE_NAME),
    socketChmod: env.ASYA_SOCKET_CHMOD,
    validate: env.ASYA_ENABLE_VALIDATION,
    includeMetadata: env.ASYA_INCLUDE_METADATA,
    chunkSize: env.ASYA_CHUNK_SIZE as number,
    maxMessageSize: env.ASYA_MAX_MESSAGE_SIZE as number,
    logLevel: env.ASYA_LOG_LEVEL,
    jsonCodec: env.ASYA_JSON_CODEC,
    handlerTimeoutMs: env.ASYA_HANDLER_TIMEOUT,
    readTimeoutMs: env.ASYA_READ_TIMEOUT as number,
    shutdownTimeoutMs: env.ASYA_SHUTDOWN_TIMEOUT as number,
    handlerKillGraceMs: env.ASYA_HANDLER_KILL_GRACE as number,
    handlerArgs: env.ASYA_HANDLER_ARGS,
    workerMaxMessages: env.ASYA_WORKER_MAX_MESSAGES,
    workerMaxMemory: env.ASYA_WORKER_MAX_MEMORY,
    workers: env.ASYA_WORKERS as number,
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
      reject(
        issues,
        'ASYA_HANDLER',
        handler,
        "'module.function' or 'module.Class.method' (letters, digits, _ and dots)",
      );
      return null;
    }
    return { spec: handler, variable: 'ASYA_HANDLER' };
  }
  if (legacy !== undefined) {
    const m = LEGACY_MODULE_PATTERN.exec(legacy);
    if (!m) {
      reject(issues, 'ASYA_PROCESS_MODULE', legacy, "'module.path:function' or 'module.path'");
      return null;
    }
    return { spec: `${m[1]}.${m[2] ?? 'process'}`, variable: 'ASYA_PROCESS_MODULE' };
  }
  issues.push(
    'ASYA_HANDLER is not set: set it to your handler, e.g. ASYA_HANDLER=my_module.process or my_module.MyClass.process',
  );
  return null;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[]; logLevel: LogLevel };

/** Parse the environment. Returns every problem at once, so one restart fixes them all. */
export function parseConfig(env: NodeJS.ProcessEnv): ConfigResult {
  const issues: string[] = [];
  const variables = readVariables(env, issues);
  const config = variables && toConfig(variables, issues);
  if (config) return { ok: true, config };
  const levelIssues: string[] = [];
  const level = FIELDS.ASYA_LOG_LEVEL(env.ASYA_LOG_LEVEL, levelIssues);
  return { ok: false, errors: issues, logLevel: levelIssues.length === 0 ? level : 'info' };
}
