/**
 * Node opens its inspector on 127.0.0.1:9229 when the process receives SIGUSR1. Every container
 * of a pod shares that address, and the inspector runs whatever code it is sent: a signal must
 * never open it. Node 20 has no --disable-sigusr1; a JavaScript listener for the signal replaces
 * Node's own handler (tested: nothing listens on 9229 afterwards), in `node dist/cli.js` and in
 * the single executable alike. This module is imported first, so the window is as short as it can be.
 */
let onSignal: (() => void) | null = null;

process.on('SIGUSR1', () => onSignal?.());

/** What to do when SIGUSR1 arrives (the runtime logs that it ignored it). */
export function onSigusr1(handler: () => void): void {
  onSignal = handler;
}
