/**
 * Test harness: starts the real runtime (node dist/cli.js), which spawns a real Python, and
 * talks to it over its real Unix socket with the sidecar's framing.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRequest } from '../src/envelope/envelope.js';
import type { Job } from '../src/worker/job-queue.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
export const HANDLERS = path.join(ROOT, 'test', 'handlers');

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface RuntimeOptions {
  handler?: string;
  env?: Record<string, string | undefined>;
  /** Wait for the ready file (default) or only for the process to start. */
  waitReady?: boolean;
  cwd?: string;
  /** Extra PYTHONPATH entries before test/handlers. */
  pythonPath?: string[];
  /** Run the CLI under this command prefix (e.g. unshare). */
  wrap?: string[];
  /** Run this executable (the packaged single executable) instead of `node dist/cli.js`. */
  executable?: string;
  /** Node options before dist/cli.js (e.g. --trace-gc, which prints to stdout). */
  nodeArgs?: string[];
}

export class Runtime {
  readonly logs: LogLine[] = [];
  readonly stderrText: string[] = [];
  /** Whatever the process wrote to stdout (the runtime itself logs to stderr). */
  stdoutText = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The process has exited and its stdout and stderr are read to the end. */
  closed = false;

  constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    readonly socketPath: string,
  ) {
    child.stdout?.on('data', (chunk: Buffer) => (this.stdoutText += chunk.toString()));
    let pending = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        this.stderrText.push(line);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log record
        }
      }
    });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    child.on('close', () => (this.closed = true));
  }

  get readyFile(): string {
    return path.join(path.dirname(this.socketPath), 'runtime-ready');
  }

  isReady(): boolean {
    return fs.existsSync(this.readyFile);
  }

  async send(envelope: unknown, timeoutMs = 30_000): Promise<unknown> {
    const answer = await rawExchange(this.socketPath, Buffer.from(JSON.stringify(envelope)), timeoutMs);
    if (answer === null) throw new Error('connection closed without an answer');
    return JSON.parse(answer.toString('utf8')) as unknown;
  }

  async sendRaw(frameBody: Buffer, timeoutMs = 30_000): Promise<unknown> {
    const answer = await rawExchange(this.socketPath, frameBody, timeoutMs);
    if (answer === null) throw new Error('connection closed without an answer');
    return JSON.parse(answer.toString('utf8')) as unknown;
  }

  /** Wait for a log record matching `pred`. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    return until(
      () => `a matching log line; logs:\n${this.stderrText.join('\n')}`,
      () => this.logs.find(pred),
      timeoutMs,
    );
  }

  /** Wait for a line the handler wrote on its stdout or stderr (the runtime logs each with src "handler"). */
  waitForHandlerLine(line: string, timeoutMs = 20_000): Promise<LogLine> {
    return this.waitForLog((l) => l.src === 'handler' && l.msg === line, timeoutMs);
  }

  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const result = await this.exited;
    fs.rmSync(this.dir, { recursive: true, force: true });
    return result;
  }
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a Node script as a user would, with a minimal environment (PATH, HOME, then `env`), stdin
 * fed from `input`, stdout and stderr captured (so neither is a TTY).
 */
export function runNode(
  args: string[],
  opts: { input?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: opts.cwd ?? ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/root',
        ASYA_TEST_RUN: process.env.ASYA_TEST_RUN ?? '',
        ...coverageEnv(),
        ...opts.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => (stdout += c));
    child.stderr!.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin!.end(opts.input ?? '');
  });
}

/** What to type on a terminal once it shows `after` (past the previous step's match), `wait` (quietFor's arguments) first. */
export interface TerminalStep {
  after: RegExp;
  type: string;
  wait?: [number, string];
}

/**
 * Run the CLI on a pseudo-terminal (util-linux `script`), as in an interactive shell: stdin, stdout and
 * stderr are the terminal. `steps` are typed as the terminal shows their prompts; resolves with all it
 * showed (what was typed echoed, lines ending in \r\n) and the exit code, once the command has ended.
 */
export async function onTerminal(
  args: string[],
  steps: TerminalStep[] = [],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ out: string; code: number | null }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      NO_COLOR: '1',
      TERM: 'dumb',
      PYTHONPATH: HANDLERS,
      ...coverageEnv(),
      ...env,
    },
  });
  let out = '';
  let ended: { code: number | null } | null = null;
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.on('close', (code) => (ended = { code }));
  try {
    let seen = 0;
    for (const step of steps) {
      const at = () => out.slice(seen).search(step.after);
      await until(
        () => `${step.after} on the terminal; it shows:\n${out}`,
        () => at() !== -1,
        timeoutMs,
      );
      seen += at() + 1;
      if (step.wait) await quietFor(...step.wait);
      child.stdin.write(`${step.type}\n`);
    }
    const { code } = await until(
      () => `the command to end; the terminal shows:\n${out}`,
      () => ended,
      timeoutMs,
    );
    return { out, code };
  } finally {
    if (ended === null) child.kill('SIGKILL');
  }
}

/** scripts/run-tests.mjs collects V8 coverage from every runtime a test starts: pass its directory on. */
export function coverageEnv(): Record<string, string> {
  return process.env.NODE_V8_COVERAGE ? { NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE } : {};
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

type Probe<T> = () => T | null | undefined | false | Promise<T | null | undefined | false>;

/**
 * Poll `probe` every `everyMs` until it gives something truthy (returned), or fail after `timeoutMs`
 * naming `what` (a function is asked only then: it can describe the state the wait ended in).
 */
export async function until<T>(
  what: string | (() => string),
  probe: Probe<T>,
  timeoutMs = 20_000,
  everyMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(everyMs);
  }
}

/**
 * Let `ms` pass where the clock itself is the point: a negative assertion (nothing may happen
 * meanwhile), or time as the input of the unit under test. `why` says which, at the call. Anything
 * that can be awaited as an event (a log line, a file, a PID, a metric) is awaited with `until`.
 */
export function quietFor(ms: number, why: string): Promise<void> {
  if (why === '') throw new Error('quietFor needs the reason the clock is the point');
  return sleep(ms);
}

/** Wait until `file` exists. */
export function waitForFile(file: string, what = file, timeoutMs = 20_000): Promise<true> {
  return until(`${what} to exist`, () => fs.existsSync(file), timeoutMs);
}

/** Whether `pid` is a running process (not gone, not a zombie waiting to be reaped). */
export function isRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** Wait until `pid` no longer runs (gone, or a zombie). */
export function waitForExit(pid: number, what: string, timeoutMs = 20_000): Promise<true> {
  return until(`${what} (pid ${pid}) to exit`, () => !isRunning(pid), timeoutMs);
}

/** Bytes `pid` has read so far (every read(2) of its threads, sockets and pipes included: /proc/pid/io's rchar). */
export function bytesRead(pid: number): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
}

/** How many descriptors `pid` holds open. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export function tempDir(prefix = 'asya-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Start the runtime; resolves when the ready file exists (or, with waitReady=false, at once). */
export async function startRuntime(opts: RuntimeOptions = {}): Promise<Runtime> {
  const dir = tempDir();
  const socketDir = path.join(dir, 'sock');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/root',
    PYTHONPATH: [...(opts.pythonPath ?? []), HANDLERS].join(':'),
    ASYA_SOCKET_DIR: socketDir,
    ASYA_LOG_LEVEL: 'DEBUG',
  };
  if (process.env.PYENV_ROOT) env.PYENV_ROOT = process.env.PYENV_ROOT;
  // scripts/run-tests.mjs stops whatever carries its marker when the run ends (a cancelled test's runtime)
  if (process.env.ASYA_TEST_RUN) env.ASYA_TEST_RUN = process.env.ASYA_TEST_RUN;
  Object.assign(env, coverageEnv());
  if (opts.handler !== undefined) env.ASYA_HANDLER = opts.handler;
  // ASYA_TEST_PRELOAD=1 runs every runtime a test starts with workers forked from a template.
  if (process.env.ASYA_TEST_PRELOAD === '1') env.ASYA_PRELOAD = 'true';
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const cmd = [
    ...(opts.wrap ?? []),
    ...(opts.executable ? [opts.executable] : [process.execPath, ...(opts.nodeArgs ?? []), CLI]),
  ];
  const child = spawn(cmd[0] as string, cmd.slice(1), { env, cwd: opts.cwd ?? dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const socketPath =
    env.ASYA_SOCKET_PATH ?? path.join(env.ASYA_SOCKET_DIR ?? socketDir, env.ASYA_SOCKET_NAME ?? 'asya-runtime.sock');
  const rt = new Runtime(child, dir, socketPath);
  if (opts.waitReady === false) return rt;
  await until(
    () => `the ready file within 30 s:\n${rt.stderrText.join('\n')}`,
    () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `runtime exited (${child.exitCode ?? child.signalCode}) before ready:\n${rt.stderrText.join('\n')}`,
        );
      }
      return rt.isReady();
    },
    30_000,
  ).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return rt;
}

/** Run the runtime expecting it to exit on its own (startup failures). */
export async function runToExit(
  opts: RuntimeOptions,
  timeoutMs = 30_000,
): Promise<{ code: number | null; logs: LogLine[]; text: string; readyFileSeen: boolean }> {
  const rt = await startRuntime({ ...opts, waitReady: false });
  let readyFileSeen = false;
  const poll = setInterval(() => (readyFileSeen ||= rt.isReady()), 5);
  const timer = setTimeout(() => rt.child.kill('SIGKILL'), timeoutMs);
  const { code } = await rt.exited;
  clearInterval(poll);
  clearTimeout(timer);
  readyFileSeen ||= rt.isReady();
  await until('the last of its stderr after its exit', () => rt.closed, 10_000);
  fs.rmSync(rt.dir, { recursive: true, force: true });
  return { code, logs: rt.logs, text: rt.stderrText.join('\n'), readyFileSeen };
}

/**
 * Send raw bytes as one framed request; resolves with the answer body, or null if the runtime
 * closed the connection without one.
 */
export function rawExchange(
  socketPath: string,
  body: Buffer | null,
  timeoutMs = 30_000,
  rawBytes?: Buffer,
): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => {
      if (rawBytes) sock.write(rawBytes);
      if (body) {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(body.length);
        sock.write(Buffer.concat([head, body]));
      }
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      if (all.length < 4) return resolve(null);
      const n = all.readUInt32BE(0);
      if (all.length !== 4 + n)
        return reject(new Error(`bad answer framing: prefix ${n}, got ${all.length - 4} bytes`));
      resolve(all.subarray(4));
    });
  });
}

/** An envelope around a payload. */
export function env(payload: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: 'msg-1', route: { actors: ['a', 'b', 'c'], current: 0 }, payload, ...extra };
}

export type ErrorAnswer = Array<{
  error: string;
  details: { message: string; type: string; traceback: string; [k: string]: unknown };
}>;

export function asError(answer: unknown): ErrorAnswer[0] {
  if (!Array.isArray(answer) || answer.length !== 1 || typeof answer[0]?.error !== 'string') {
    throw new Error(`expected one error object, got ${JSON.stringify(answer).slice(0, 500)}`);
  }
  return answer[0] as ErrorAnswer[0];
}

/** Interpreters under pyenv for version tests: newest patch of each minor. */
export function pyenvPython(minor: string): string | null {
  let root = process.env.PYENV_ROOT;
  if (!root) {
    try {
      root = execFileSync('pyenv', ['root'], { encoding: 'utf8' }).trim();
    } catch {
      return null;
    }
  }
  const dir = path.join(root, 'versions');
  if (!fs.existsSync(dir)) return null;
  const hits = fs
    .readdirSync(dir)
    .filter((v) => v === minor || v.startsWith(`${minor}.`))
    .sort();
  const last = hits[hits.length - 1];
  return last ? path.join(dir, last, 'bin', 'python3') : null;
}

/** The test virtualenv with numpy (made by scripts/run-tests.mjs). */
export const TEST_VENV_PYTHON = path.join(ROOT, '.cache', 'test-venv', 'bin', 'python3');

/** Whether the process holds a TCP socket listening on `port` (its descriptors matched against /proc/net/tcp*). */
export function listensOnTcp(pid: number, port: number): boolean {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const table of ['tcp', 'tcp6']) {
    for (const line of fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hexPort) && f[3] === '0A' && inodes.has(f[9] ?? '')) return true; // 0A: LISTEN
    }
  }
  return false;
}

/** Whether anything accepts a TCP connection on 127.0.0.1:`port`. */
export function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * A queued request without a socket, for driving a supervisor or a pool with fake workers: `answer`
 * resolves with the response's JSON text (length prefix removed), or null when it was aborted.
 */
export function fakeJob(envelope: unknown): { answer: Promise<string | null>; job: Job } {
  let answered!: (body: string | null) => void;
  const answer = new Promise<string | null>((resolve) => (answered = resolve));
  return {
    answer,
    job: {
      envelope: parseRequest(Buffer.from(JSON.stringify(envelope)), true),
      received: process.hrtime.bigint(),
      exchange: {
        respond: (chunks: Buffer[]) => answered(Buffer.concat(chunks).subarray(4).toString()),
        abort: () => answered(null),
        clientGone: () => false,
      },
    },
  };
}

/** Each non-empty line of `text` parsed as JSON (the output of `call`, one envelope a line). */
export const jsonLines = (text: string): unknown[] =>
  text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as unknown);

/** Processes (not zombies) whose environment has `name=value`: every process a runtime started, wherever it sits. */
export function processesWithEnv(name: string, value: string): Array<{ pid: number; comm: string }> {
  const found: Array<{ pid: number; comm: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!fs.readFileSync(`/proc/${entry}/environ`, 'latin1').includes(`${name}=${value}\0`)) continue;
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** GET http://127.0.0.1:`port``url` (the runtime's metrics by default). */
export function scrape(port: number, url = '/metrics'): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: url }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
      })
      .on('error', reject);
  });
}

/** The value of one series (name and labels, as printed) in a Prometheus text exposition. */
export function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/**
 * A seeded generator for generated cases: the seed is ASYA_TEST_SEED, else the clock (name it in a
 * failure, to replay it); next(n) gives 0 to n - 1.
 */
export function seeded(): { seed: number; next: (n: number) => number } {
  const seed = Number(process.env.ASYA_TEST_SEED ?? Date.now() % 1e9);
  let state = seed;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
  return { seed, next };
}
