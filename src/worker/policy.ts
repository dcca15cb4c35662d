/**
 * The supervisor's rules as data: when to restart and how fast, when to replace a healthy worker,
 * and the two stages of the handler time limit. The supervisor holds the mechanism; everything a
 * deployment may tune, and every threshold a test wants to shrink, is here.
 */
import type { Config } from '../config.js';

export interface WorkerPolicy {
  restart: {
    /** Consecutive failed re-initialisations after which the runtime gives up and exits. */
    maxInitFailures: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** Retries of a spawn refused for lack of descriptors stay frequent: they cost nothing and end the outage sooner. */
    spawnRetryMaxMs: number;
  };
  timeLimit: {
    /** ASYA_HANDLER_TIMEOUT: the handler is interrupted inside Python (HandlerTimeout); null: no limit. */
    softMs: number | null;
    /** ASYA_HANDLER_KILL_GRACE: after the interruption, how long before the process is killed. */
    killGraceMs: number;
  };
  recycle: {
    /** ASYA_WORKER_MAX_MESSAGES: replace the process after this many calls; null: never. */
    maxMessages: number | null;
    /** ASYA_WORKER_MAX_MEMORY: replace it when the handler process's RSS exceeds this; null: never. */
    maxMemoryBytes: number | null;
    /**
     * Consecutive messages answered with MemoryError after which the process is replaced: under a
     * memory limit a process can stay alive, and ready, while every message fails (seen in production:
     * from message 150 on, every message got MemoryError).
     */
    memoryErrors: number;
  };
  /** How long a worker stopped on purpose (shutdown, recycling) has to run close() and exit. */
  stopGraceMs: number;
  /**
   * Whether a recycled worker's replacement may start before it has exited. Not when each worker loads
   * its own copy (two copies of a GPU model at once may not fit); yes when workers are forked from a
   * template (ASYA_PRELOAD) and share it: the old one's close() and exit then cost the queue nothing.
   */
  replaceBeforeExit: boolean;
}

export const DEFAULT_POLICY: WorkerPolicy = {
  restart: { maxInitFailures: 5, backoffBaseMs: 250, backoffMaxMs: 15_000, spawnRetryMaxMs: 5_000 },
  timeLimit: { softMs: null, killGraceMs: 5_000 },
  recycle: { maxMessages: null, maxMemoryBytes: null, memoryErrors: 3 },
  stopGraceMs: 2_000,
  replaceBeforeExit: false,
};

export function policyFromConfig(config: Config): WorkerPolicy {
  return {
    restart: DEFAULT_POLICY.restart,
    timeLimit: { softMs: config.handlerTimeoutMs, killGraceMs: config.handlerKillGraceMs },
    recycle: {
      ...DEFAULT_POLICY.recycle,
      maxMessages: config.workerMaxMessages,
      maxMemoryBytes: config.workerMaxMemory,
    },
    stopGraceMs: config.shutdownTimeoutMs,
    replaceBeforeExit: config.preload,
  };
}

/** The one backoff rule: the base for the first retry, doubling, capped. */
function backoff(retry: number, baseMs: number, maxMs: number): number {
  return Math.min(baseMs * 2 ** (retry - 1), maxMs);
}

/** No delay for the first restart in a streak; then 250 ms, 500 ms, ... up to 15 s. */
export function restartDelay(streak: number, restart: WorkerPolicy['restart'] = DEFAULT_POLICY.restart): number {
  return streak <= 1 ? 0 : backoff(streak - 1, restart.backoffBaseMs, restart.backoffMaxMs);
}

/** A start the system refused (no descriptors, no processes), the `attempt`th time: 250 ms, 500 ms, ... up to 5 s. */
export function spawnRetryDelay(attempt: number, restart: WorkerPolicy['restart'] = DEFAULT_POLICY.restart): number {
  return backoff(attempt, restart.backoffBaseMs, restart.spawnRetryMaxMs);
}

/** What one worker has done since it was loaded, as the recycle rule reads it. */
export interface WorkerUsage {
  messages: number;
  /** Resident memory of the handler's process in bytes; null when not measured. */
  rssBytes: number | null;
  consecutiveMemoryErrors: number;
}

export interface RecycleReason {
  reason: 'max_messages' | 'max_memory' | 'memory_errors';
  message: string;
  fields: Record<string, unknown>;
}

/** Whether the worker should be replaced before the next message, and why (for the log). */
export function recycleReason(recycle: WorkerPolicy['recycle'], usage: WorkerUsage): RecycleReason | null {
  if (usage.consecutiveMemoryErrors >= recycle.memoryErrors) {
    return {
      reason: 'memory_errors',
      message: `${usage.consecutiveMemoryErrors} messages in a row raised MemoryError`,
      fields: { memory_errors: usage.consecutiveMemoryErrors },
    };
  }
  if (recycle.maxMemoryBytes !== null && usage.rssBytes !== null && usage.rssBytes > recycle.maxMemoryBytes) {
    return {
      reason: 'max_memory',
      message: `its resident memory (${formatBytes(usage.rssBytes)}) exceeds ASYA_WORKER_MAX_MEMORY=${formatBytes(recycle.maxMemoryBytes)}`,
      fields: { rss_bytes: usage.rssBytes, limit_bytes: recycle.maxMemoryBytes, messages: usage.messages },
    };
  }
  if (recycle.maxMessages !== null && usage.messages >= recycle.maxMessages) {
    return {
      reason: 'max_messages',
      message: `it handled ${usage.messages} messages (ASYA_WORKER_MAX_MESSAGES=${recycle.maxMessages})`,
      fields: { messages: usage.messages },
    };
  }
  return null;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${Number(v.toFixed(1))} ${units[i]}`;
}
