/**
 * Timeouts that all last the same time (ASYA_READ_TIMEOUT), for every connection, under one timer.
 * Deadlines are kept in the order they were set, which is the order they fall due; cancelling one
 * forgets it, and those at the front are dropped at once, so a stream of one message at a time keeps
 * the queue at one or two entries. The timer stays armed lazily: it wakes at the earliest deadline,
 * fires what is due and re-arms for the next.
 *
 * Why not a setTimeout per connection: each message would set and clear one, and Node creates and
 * drops its timer list for that duration every time the last timer in it goes (issue #17).
 */
import { performance } from 'node:perf_hooks';

export interface Deadline {
  readonly at: number;
  /** Null once cancelled or fired. */
  expire: (() => void) | null;
}

export class Deadlines {
  private queue: Deadline[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly ms: number) {}

  /** `expire` runs once, `ms` from now, unless the deadline is cancelled first. */
  add(expire: () => void): Deadline {
    const deadline: Deadline = { at: performance.now() + this.ms, expire };
    this.queue.push(deadline);
    if (this.timer === null) this.arm(this.ms);
    return deadline;
  }

  cancel(deadline: Deadline | null): void {
    if (deadline === null) return;
    deadline.expire = null;
    this.dropCancelled();
  }

  /** Deadlines still waiting (for tests). */
  get size(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]?.expire) n++;
    return n;
  }

  private dropCancelled(): void {
    const { queue } = this;
    while (this.head < queue.length && queue[this.head]?.expire === null) this.head++;
    if (this.head === queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.wake(), Math.max(1, Math.ceil(ms)));
    // The connections keep the runtime alive, not their timeouts.
    this.timer.unref();
  }

  private wake(): void {
    this.timer = null;
    const now = performance.now();
    while (this.head < this.queue.length) {
      const next = this.queue[this.head] as Deadline;
      if (next.expire !== null && next.at > now) {
        if (this.timer === null) this.arm(next.at - now); // a deadline added meanwhile may have armed it
        return;
      }
      this.head++;
      const expire = next.expire;
      next.expire = null;
      expire?.();
    }
    this.queue = [];
    this.head = 0;
  }
}
