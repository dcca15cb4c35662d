/**
 * Starting the shim's process, and starting it early.
 *
 * Python's own start (interpreter, site-packages, compiling the shim, forking its reaper) takes
 * about as long as Node's, and needs nothing from the configuration: the handler and everything
 * else travel in the `init` message. So the runtime starts Python before it loads the rest of
 * itself (cli.ts), and the first worker adopts that process. This module stays light (no pino
 * or msgpackr behind it) because it runs before them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Duplex, Readable, Writable } from 'node:stream';
import { resolveInterpreter } from './interpreter.js';
import { type ShimLaunch, shimLaunch } from './shim.js';

/** The fd the shim's reaper watches for the supervisor's end, and the variable that tells it which. */
export const LIFELINE_FD = 4;
const LIFELINE_VARIABLE = 'ASYA_SHIM_LIFELINE_FD';
/**
 * ASYA_PRELOAD (see the template section of asya_shim.py). fd 5 of a shim that may become the template
 * is its end of the socket porters send fork requests on; fd 5 of a porter is the supervisor's end of
 * that socket, duplicated, through which it reaches the template.
 */
export const FORK_FD = 5;
const FORK_VARIABLE = 'ASYA_SHIM_FORK_FD';
const TEMPLATE_VARIABLE = 'ASYA_SHIM_TEMPLATE_FD';

/** What fd 5 is: nothing, the fork-request socket of a shim that may become the template, or a porter's way to it. */
export type ForkRole = null | 'template' | { template: Duplex };

/**
 * glibc returns freed blocks above 128 KiB to the kernel at once, so every large message costs the
 * shim fresh pages; first-touch faults dominated large-message latency in the benchmark (on its VM
 * they cost as much as parsing the JSON). Keeping such blocks in the heap lets the next message reuse
 * them. An operator's own GLIBC_TUNABLES (even empty) wins; musl ignores the variable.
 */
const SHIM_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456';

export function shimEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return 'GLIBC_TUNABLES' in env ? env : { ...env, GLIBC_TUNABLES: SHIM_MALLOC_TUNABLES };
}

/**
 * Spawn the shim: stdin/stdout the channel, stderr and fd 3 (the handler's stdout) for logs, fd 4
 * the lifeline. Its own session: no terminal signal reaches it, and its group is the reaper's alone.
 * Throws for some failures; EMFILE, ENOENT and the like arrive as an 'error' event instead.
 */
export function spawnShim(python: string, shim: ShimLaunch, fork: ForkRole = null): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...shimEnvironment(process.env), [LIFELINE_VARIABLE]: String(LIFELINE_FD) };
  const stdio: Array<'pipe' | Duplex> = ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'];
  if (fork === 'template') {
    env[FORK_VARIABLE] = String(FORK_FD);
    stdio.push('pipe');
  } else if (fork !== null) {
    env[TEMPLATE_VARIABLE] = String(FORK_FD);
    stdio.push(fork.template);
  }
  return spawn(python, shim.args, { stdio, env, detached: true });
}

/** A shim process started before the configuration was read, waiting for its `init`. */
export class EarlyPython {
  private child: ChildProcess | null;
  private failed = false;

  private constructor(
    readonly python: string,
    readonly shim: ShimLaunch,
    child: ChildProcess,
  ) {
    this.child = child;
    // Unheard, an 'error' event would throw; the worker that would have heard it spawns afresh instead.
    child.once('error', () => {
      this.failed = true;
    });
    // The embedded shim's source goes now, so Python compiles it while Node loads the rest.
    if (shim.preamble) (child.stdio[0] as Writable).write(shim.preamble);
  }

  /**
   * Start the shim the way the configuration will most likely ask for it (ASYA_PYTHONEXECUTABLE,
   * else python3 on PATH). Null when that interpreter cannot be found or started: the runtime then
   * reports it as it always has, once the configuration is read.
   */
  static start(env: NodeJS.ProcessEnv): EarlyPython | null {
    const name = env.ASYA_PYTHONEXECUTABLE?.trim() || 'python3';
    try {
      const python = resolveInterpreter(name, env.PATH, name !== 'python3');
      const shim = shimLaunch();
      // It may become the template (ASYA_PRELOAD): the configuration is not read yet.
      const child = spawnShim(python, shim, 'template');
      if (child.pid === undefined) {
        child.once('error', () => undefined);
        return null;
      }
      return new EarlyPython(python, shim, child);
    } catch {
      return null;
    }
  }

  /**
   * The process, for the first worker started with the same interpreter and shim, while it is still
   * running (so the worker sees its exit). Null otherwise, and for everyone after the first.
   */
  take(python: string, shim: ShimLaunch): ChildProcess | null {
    const child = this.child;
    if (child === null) return null;
    const same = python === this.python && shim.args.join('\0') === this.shim.args.join('\0');
    const running = child.exitCode === null && child.signalCode === null && !this.failed;
    if (!same || !running) {
      void this.discard();
      return null;
    }
    this.child = null;
    return child;
  }

  /**
   * Stop it, unless a worker took it: the configuration turned out invalid, or the runtime stops
   * before its first worker. SIGTERM reaches the reaper, which takes the shim down with it (and a
   * Python still starting dies of the signal itself); resolves once it has exited.
   */
  async discard(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.pid === undefined) return;
    for (const stream of child.stdio as Array<Readable | Writable | null>) stream?.destroy();
    const pid = child.pid;
    if (child.exitCode !== null || child.signalCode !== null) {
      signalProcess(-pid, 'SIGKILL'); // what its group may still hold (see below)
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const cancel = stopTree(pid, () => [pid]);
    await exited;
    cancel();
    // Its group may outlive it: a wrapper script that dies of SIGTERM leaves its children there.
    signalProcess(-pid, 'SIGKILL');
  }
}

/** How long a reaper has to take its tree down after SIGTERM before the groups are SIGKILLed. */
export const REAPER_GRACE_MS = 1000;

/**
 * The one way a shim's tree is taken down: SIGTERM to its reaper (`pid`), which kills the shim's
 * group and everything re-parented to it, then exits. Should it not within REAPER_GRACE_MS (stopped,
 * or starved of CPU), each process group in `groups()` is SIGKILLed, after `onEscalate`. Returns the
 * cancel, for when the reaper has exited.
 */
export function stopTree(pid: number, groups: () => Array<number | null>, onEscalate?: () => void): () => void {
  signalProcess(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    onEscalate?.();
    for (const group of groups()) if (group !== null) signalProcess(-group, 'SIGKILL');
  }, REAPER_GRACE_MS);
  return () => clearTimeout(timer);
}

/** Send a signal to a process, or with a negative pid to its group; gone already is fine. */
export function signalProcess(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // ESRCH: already gone
  }
}
