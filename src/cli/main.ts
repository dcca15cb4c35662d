/**
 * The commands: with none, the runtime the operator injects (configured by ASYA_* variables); the
 * others are for people: `call` and `check` a handler locally, `send` to a running runtime. Loaded by
 * cli.ts once it has started Python.
 */
import { ExitCode } from '../errors.js';
import { flushLogs } from '../logger.js';
import { mark } from '../startup.js';
import { VERSION } from '../version.js';
import type { EarlyPython } from '../worker/spawn.js';
import { call, callHelp } from './call.js';
import { check, checkHelp } from './check.js';
import { UsageError } from './messages.js';
import { probe, probeHelp } from './probe.js';
import { send, sendHelp } from './send.js';
import { serve } from './serve.js';

const HELP = `asya-runtime ${VERSION}: the Asya actor runtime

Usage:
  asya-runtime                      run the runtime (configured by ASYA_* environment variables)
  asya-runtime call --handler SPEC [JSON]
                                    run a handler on messages locally, print the answers
  asya-runtime check --handler SPEC load a handler and report whether it works (pre-deploy check)
  asya-runtime send [--socket PATH] [JSON]
                                    send messages to a running runtime, as the sidecar does
  asya-runtime probe               exit 0 when the runtime is ready (a readiness probe)
  asya-runtime COMMAND --help       options of a command
  asya-runtime --version | --help

Runtime environment (docs/configuration.md has all of them):
  ASYA_HANDLER=module.function | module.Class.method   (required)
  ASYA_SOCKET_DIR=/var/run/asya   ASYA_HANDLER_MODE=payload|envelope   ASYA_LOG_LEVEL=INFO

Exit codes: 0 ok, 1 an answer was an error (call, send) or the runtime stopped at once (second signal),
2 bad configuration or usage, 3 Python not found, 4 handler failed to load, 5 socket problem,
6 Python kept failing to restart.`;

const commands: Record<string, { run: (args: string[]) => Promise<number>; help: string }> = {
  call: { run: call, help: callHelp },
  check: { run: check, help: checkHelp },
  send: { run: send, help: sendHelp },
  probe: { run: probe, help: probeHelp },
};

async function main(argv: string[], early: EarlyPython | null): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) return serve(early);
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const cmd = commands[command];
  if (!cmd) return usage(`unknown command ${JSON.stringify(command)}`, '');
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.help}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    // parseArgs reports unknown or malformed options with an ERR_PARSE_ARGS_* code
    const code = (err as { code?: string }).code ?? '';
    if (err instanceof UsageError || code.startsWith('ERR_PARSE_ARGS'))
      return usage((err as Error).message, ` ${command}`);
    throw err;
  }
}

function usage(message: string, command: string): number {
  process.stderr.write(`asya-runtime${command}: ${message}\nSee asya-runtime${command} --help\n`);
  return ExitCode.config;
}

/** How long the last log lines (a FATAL line) may take to reach a slow stderr reader; a stalled one loses them. */
const LOG_FLUSH_MS = 2000;

/** Run the command line `argv` (process.argv without node and script) and exit with its code. */
export function run(argv: string[], early: EarlyPython | null): void {
  mark('modules_loaded');
  main(argv, early).then(
    async (code) => {
      process.exitCode = code;
      await flushLogs(LOG_FLUSH_MS);
      // The runtime's handles are closed by now; anything left (a stuck child pipe, a stderr nobody
      // reads) must not keep us alive.
      setTimeout(() => process.exit(code), 100).unref();
    },
    (err: unknown) => {
      process.stderr.write(`asya-runtime: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(ExitCode.abrupt);
    },
  );
}
