/** No command: the runtime exactly as the operator injects it, configured by ASYA_* variables. */
import { parseConfig } from '../config.js';
import { ExitCode } from '../errors.js';
import { createLogger } from '../logger.js';
import { onSigusr1 } from '../no-debugger.js';
import { startRuntime } from '../runtime/runtime.js';

export async function serve(): Promise<number> {
  const parsed = parseConfig(process.env);
  if (!parsed.ok) {
    const log = createLogger(parsed.logLevel);
    for (const error of parsed.errors) log.fatal({ exit_code: ExitCode.config }, `FATAL: ${error}`);
    return ExitCode.config;
  }
  const log = createLogger(parsed.config.logLevel);
  const runtime = startRuntime(parsed.config, log, { env: process.env });
  let signals = 0;
  // SIGHUP (a closed terminal, `kill -HUP`) and SIGQUIT would otherwise end the process at once,
  // leaving the socket and the ready file behind.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const) {
    process.on(signal, () => {
      if (++signals > 1) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(ExitCode.abrupt);
      }
      void runtime.shutdown(signal);
    });
  }
  onSigusr1(() => log.warn({ signal: 'SIGUSR1' }, 'ignored SIGUSR1: the runtime never opens a debugger'));
  return runtime.done;
}
