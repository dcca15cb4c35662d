/**
 * The requests waiting for the handler, in the order they became complete. One queue whether one
 * Python process serves it or a pool of them: each takes the oldest when it is free, so messages are
 * handled in arrival order whatever the number of workers.
 */
import type { RequestEnvelope } from '../envelope/envelope.js';
import type { Logger } from '../logger.js';
import type { Exchange } from '../socket/server.js';

export interface Job {
  envelope: RequestEnvelope;
  exchange: Exchange;
  /** process.hrtime.bigint() when the request was complete, for latency logs. */
  received: bigint;
}

/** A drop's log line names at most this many message ids. */
const MAX_LOGGED_IDS = 10;

export class JobQueue {
  private readonly jobs: Job[] = [];

  get length(): number {
    return this.jobs.length;
  }

  push(job: Job): void {
    this.jobs.push(job);
  }

  /**
   * The oldest job whose client is still there. A message whose client closed its connection while
   * it waited is dropped, not run: the sidecar redelivers it, and running it twice is worse than not
   * at all (run, 20 abandoned 0.5 s messages would delay the next live client by 10 s).
   */
  takeLive(log: Logger): Job | undefined {
    const dropped: Array<string | null> = [];
    let job = this.jobs.shift();
    while (job?.exchange.clientGone()) {
      job.exchange.abort();
      dropped.push(job.envelope.id ?? null);
      job = this.jobs.shift();
    }
    if (dropped.length > 0) {
      log.warn(
        { dropped: dropped.length, ids: dropped.slice(0, MAX_LOGGED_IDS), queued: this.jobs.length + (job ? 1 : 0) },
        `dropped ${dropped.length} queued message(s) whose client closed its connection before the handler ran; the sidecar redelivers them`,
      );
    }
    return job;
  }

  /** Close every waiting connection without an answer (the sidecar retries them). */
  abortAll(): void {
    for (const job of this.jobs.splice(0)) job.exchange.abort();
  }
}
