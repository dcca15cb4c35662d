/** No command: the runtime exactly as the operator injects it, configured by ASYA_* variables. */
import os from 'node:os';
import { parseConfig } from '../config.js';
import { releaseEarlySignals } from '../early-signals.js';
import { ExitCode, FatalError } from '../errors.js';
import { createLogger, logFatal } from '../logger.js';
import { onSigusr1 } from '../no-debugger.js';
import { startRuntime } from '../runtime/runtime.js';
import { mark } from '../startup.js';
import type { EarlyPython } from '../worker/spawn.js';

const onThisPlatform = (names: readonly string[]) => names.filter((n) => n in os.constants.signals) as NodeJS.Signals[];
const SHUTDOWN_SIGNALS = onThisPlatform(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGXCPU', 'SIGPWR']);
/** Default action "terminate" too; SIGUSR1 is no-debugger.ts's, SIGPIPE and SIGXFSZ Node already ignores. */
const IGNORED_SIGNALS = onThisPlatform([
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  // V8's sampling profiler runs on SIGPROF: a handler here would end `node --cpu-prof` / `--prof` at
  // its first sample ("Profiling timer expired"), so a profiled runtime keeps V8's.
  ...(process.execArgv.some((a) => /^--(cpu-)?prof/.test(a)) ? [] : ['SIGPROF']),
  'SIGTRAP',
  'SIGSTKFLT',
  'SIGIO',
  'SIGSYS',
]);

/** `early`: the shim process cli.ts started before the configuration was read (worker/spawn.ts). */
export async function serve(early: EarlyPython | null = null): Promise<number> {
  const parsed = parseConfig(process.env);
  mark('config_parsed');
  if (!parsed.ok) {
    releaseEarlySignals(); // exiting anyway
    const log = createLogger(parsed.logLevel, parsed.logFormat);
    for (const error of parsed.errors) logFatal(log, new FatalError(ExitCode.config, error));
    await early?.discard(); // no Python outlives a configuration error
    return ExitCode.config;
  }
  const log = createLogger(parsed.config.logLevel, parsed.config.logFormat);
  const runtime = startRuntime(parsed.config, log, { env: process.env, early });
  let signals = 0;
  // Every signal whose default action would end the process at once, leaving the socket and the ready
  // file behind, is handled. These shut down as SIGTERM does: a closed terminal or `kill -HUP`
  // (SIGHUP), SIGQUIT, the CPU-time soft limit (SIGXCPU, before the kernel's SIGKILL at the hard one)
  // and a power failure (SIGPWR).
  for (const signal of SHUTDOWN_SIGNALS) {
    process.on(signal, () => {
      if (++signals > 1) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(ExitCode.abrupt);
      }
      void runtime.shutdown(signal);
    });
  }
  // A stop asked for while the runtime was still loading is acted on now.
  for (const signal of releaseEarlySignals()) process.emit(signal, signal);
  // The rest mean nothing to the runtime (timers, profilers, async I/O it never asked for): it keeps serving.
  for (const signal of IGNORED_SIGNALS) {
    process.on(signal, () => log.warn({ signal }, `ignored ${signal}: the runtime keeps serving (SIGTERM stops it)`));
  }
  onSigusr1(() => log.warn({ signal: 'SIGUSR1' }, 'ignored SIGUSR1: the runtime never opens a debugger'));
  return runtime.done;
}
