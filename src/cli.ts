#!/usr/bin/env node
/**
 * `asya-runtime`: with no command it is the runtime the operator injects (configured by ASYA_*
 * variables). `send` talks to a running runtime the way the sidecar does.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exchange } from './client.js';
import { parseConfig } from './config.js';
import { ExitCode } from './errors.js';
import { createLogger } from './logger.js';
import { startRuntime } from './runtime.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `asya-runtime ${VERSION}: the Asya actor runtime

Usage:
  asya-runtime                    run the runtime (configured by ASYA_* environment variables)
  asya-runtime send [options] [JSON]
                                  send one message to a running runtime, print the answer
  asya-runtime --version | --help

Runtime environment (see docs/configuration.md for all of them):
  ASYA_HANDLER=module.function | module.Class.method   (required)
  ASYA_SOCKET_DIR=/var/run/asya   ASYA_HANDLER_MODE=payload|envelope   ASYA_LOG_LEVEL=INFO

send options:
  --socket PATH      the runtime's socket (default: $ASYA_SOCKET_DIR/asya-runtime.sock)
  --envelope         JSON is a whole envelope, sent as is (default: JSON is the payload)
  --route a,b,c      actors of the route built around a payload (default: the one actor "actor")
  --timeout SECONDS  give up waiting for the answer (default: no limit)
  JSON               the message; "-" or nothing reads it from stdin

Exit codes: 0 ok, 1 the answer was an error, 2 bad configuration or usage, 3 Python not found,
4 handler failed to load, 5 socket problem, 6 Python kept failing to restart.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (command === 'send') return send(rest);
  if (command !== undefined) {
    process.stderr.write(`asya-runtime: unknown command ${JSON.stringify(command)}; see asya-runtime --help\n`);
    return ExitCode.config;
  }
  return serve();
}

async function serve(): Promise<number> {
  const parsed = parseConfig(process.env);
  if (!parsed.ok) {
    const log = createLogger(parsed.logLevel);
    for (const error of parsed.errors) log.fatal({ exit_code: ExitCode.config }, `FATAL: ${error}`);
    return ExitCode.config;
  }
  const log = createLogger(parsed.config.logLevel);
  const runtime = startRuntime(parsed.config, log);
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

async function send(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      envelope: { type: 'boolean', default: false },
      route: { type: 'string', default: 'actor' },
      timeout: { type: 'string' },
    },
  });
  const socket = values.socket ?? `${process.env.ASYA_SOCKET_DIR || '/var/run/asya'}/${process.env.ASYA_SOCKET_NAME || 'asya-runtime.sock'}`;
  const text = positionals[0] === undefined || positionals[0] === '-' ? readFileSync(0, 'utf8') : positionals[0];
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch (err) {
    process.stderr.write(`asya-runtime send: the message is not valid JSON: ${(err as Error).message}\n`);
    return ExitCode.config;
  }
  const envelope = values.envelope
    ? message
    : { id: `cli-${Date.now()}`, route: { actors: values.route.split(',').map((a) => a.trim()), current: 0 }, payload: message };
  const answer = await exchange(socket, Buffer.from(JSON.stringify(envelope)), values.timeout ? Number(values.timeout) * 1000 : 0);
  const parsed = JSON.parse(answer.toString('utf8')) as unknown;
  process.stdout.write(`${process.stdout.isTTY ? JSON.stringify(parsed, null, 2) : JSON.stringify(parsed)}\n`);
  const failed = Array.isArray(parsed) && parsed.some((e) => typeof e === 'object' && e !== null && 'error' in e && (e as { error: unknown }).error);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The runtime's handles are closed by now; anything left (a stuck child pipe) must not keep us alive.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    process.stderr.write(`asya-runtime: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
