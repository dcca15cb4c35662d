/**
 * One call's time limit, in two stages: after `softMs` the soft stage (interrupt inside Python), then
 * after `killGraceMs` more the hard one (kill the process). The clock stops while the handler sits in
 * the debugger (breakpoint() under `asya-runtime call` on a terminal) and goes on from where it was.
 */
export class TimeLimit {
  private stage: 'soft' | 'kill' | 'done' = 'soft';
  /** What is left of the current stage, in ms. */
  private left: number;
  private since = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    softMs: number,
    private readonly killGraceMs: number,
    private readonly onSoft: () => void,
    private readonly onKill: () => void,
    /** Milliseconds on a monotonic clock (a test gives its own). */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.left = softMs;
    this.run();
  }

  /** The debugger opened: neither stage runs until resume(). */
  pause(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.left = Math.max(0, this.left - (this.now() - this.since));
  }

  /** The debugger closed: the stage goes on with what was left of it. */
  resume(): void {
    if (this.timer === null && this.stage !== 'done') this.run();
  }

  /** The call ended. */
  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stage = 'done';
  }

  private run(): void {
    this.since = this.now();
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stage === 'soft') {
        this.stage = 'kill';
        this.left = this.killGraceMs;
        this.onSoft();
        // onSoft may have ended the call (a worker that is already gone): then there is nothing to kill.
        if (this.stage === 'kill') this.run();
      } else if (this.stage === 'kill') {
        this.stage = 'done';
        this.onKill();
      }
    }, this.left);
  }
}
