/**
 * Signals that arrive while the runtime is still loading. Until serve() installs its handlers, a
 * SIGTERM would end Node at once by default: no log line, exit 143, and the Python started early
 * left to its lifeline. The runtime is scaled to zero and back, so a stop during the first few
 * hundred ms of a start is routine; this holds such a signal for serve() to act on as a stop.
 */
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const;
const held: NodeJS.Signals[] = [];
const hold = (signal: NodeJS.Signals) => held.push(signal);

// From the import on: cli.ts imports this module second (after no-debugger.ts), before anything that
// takes time to load, and only the runtime (no command) holds signals; `call` and the rest keep Node's.
if (process.argv.length <= 2) for (const signal of SIGNALS) process.on(signal, hold);

/** Stop holding; the signals that arrived meanwhile, in order. */
export function releaseEarlySignals(): NodeJS.Signals[] {
  for (const signal of SIGNALS) process.off(signal, hold);
  return held.splice(0);
}
