/**
 * When each phase of the runtime's start ended, in milliseconds since the process started (Node's
 * time origin), for the one log line that says how long the start took and where the time went
 * (docs/performance.md, "Cold start"). A mark is one performance.now(): cheap enough to keep on.
 * The global `performance`, not node:perf_hooks: cli.ts marks before anything else is loaded.
 */
const marks: Record<string, number> = {};

/** Record that `phase` ended now (the first time only: restarts do not move it). */
export function mark(phase: string): void {
  marks[phase] ??= round(performance.now());
}

/** Record a phase that ended at `epochMs` (a Unix time in ms, e.g. from the Python process). */
export function markAt(phase: string, epochMs: number): void {
  if (Number.isFinite(epochMs)) marks[phase] ??= round(epochMs - performance.timeOrigin);
}

/** The phases so far, in the order they ended. */
export function startupMarks(): Record<string, number> {
  return Object.fromEntries(Object.entries(marks).sort((a, b) => a[1] - b[1]));
}

const round = (ms: number) => Math.round(ms * 10) / 10;
