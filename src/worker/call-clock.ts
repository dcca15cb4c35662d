/**
 * The handler time limit's first stage without a timer per message. A call starts the clock with its
 * deadline; finishing only forgets it. One timer, armed when none is, wakes at the earliest moment a
 * deadline could have passed: it fires the call still running past its deadline, or re-arms for the
 * deadline of the call now running. Under a steady stream that is one wake-up per time limit instead
 * of a setTimeout and clearTimeout per message.
 */
import { performance } from 'node:perf_hooks';

export class CallClock {
  private timer: NodeJS.Timeout | null = null;
  private deadline = 0;
  private onExpire: (() => void) | null = null;

  /** `onExpire` runs once if the call is still running `ms` from now (unless `stop` comes first). */
  start(ms: number, onExpire: () => void): void {
    this.deadline = performance.now() + ms;
    this.onExpire = onExpire;
    if (this.timer === null) this.arm(ms);
    else this.timer.ref();
  }

  /** The call ended. The timer, if armed, finds nothing to do when it wakes, and keeps nothing alive. */
  stop(): void {
    this.onExpire = null;
    this.timer?.unref();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.wake(), Math.max(1, Math.ceil(ms)));
  }

  private wake(): void {
    this.timer = null;
    const expire = this.onExpire;
    if (expire === null) return;
    const left = this.deadline - performance.now();
    if (left > 0) {
      this.arm(left);
      return;
    }
    this.onExpire = null;
    expire();
  }
}
