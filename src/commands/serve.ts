/** No command: the runtime exactly as the operator injects it, configured by ASYA_* variables. */
import { parseConfig } from '../config.js';
import { ExitCode } from '../errors.js';
import { createLogger } from '../logger.js';
import { startRuntime } from '../runtime.js';

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
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (++signals > 1) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(1);
      }
      void runtime.shutdown(signal);
    });
  }
  return runtime.done;
}
