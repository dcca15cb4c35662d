/**
 * The runtime's configuration for `call` and `check`: the caller's ASYA_* environment, with the
 * command's flags on top, parsed by the same schema as the injected runtime (so a bad value gets
 * the same message).
 */
import fs from 'node:fs';
import { type Config, parseConfig } from '../config.js';
import { UsageError } from './messages.js';

export interface HandlerFlags {
  handler?: string;
  mode?: string;
  python?: string;
  'log-level'?: string;
  timeout?: string;
  codec?: string;
}

export function handlerEnvironment(flags: HandlerFlags, socketDir: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined) env[name] = value;
  };
  set('ASYA_HANDLER', flags.handler);
  set('ASYA_HANDLER_MODE', flags.mode);
  set('ASYA_PYTHONEXECUTABLE', flags.python);
  set('ASYA_LOG_LEVEL', flags['log-level']);
  set('ASYA_HANDLER_TIMEOUT', flags.timeout);
  set('ASYA_JSON_CODEC', flags.codec);
  if (socketDir !== null) {
    // A private socket: the operator's socket settings belong to the deployed runtime.
    delete env.ASYA_SOCKET_PATH;
    delete env.ASYA_SOCKET_NAME;
    env.ASYA_SOCKET_DIR = socketDir;
  }
  return env;
}

/**
 * The terminal `call` runs on, for a handler's breakpoint() (pdb opens on it): stdin's, when stdin is
 * one; null otherwise (piped messages, CI), and then breakpoint() fails the message saying so.
 */
export function callTerminal(): string | null {
  if (!process.stdin.isTTY) return null;
  try {
    return fs.readlinkSync('/proc/self/fd/0'); // e.g. /dev/pts/3
  } catch {
    return null; // not Linux: no debugger
  }
}

export function handlerConfig(env: NodeJS.ProcessEnv): Config {
  if (!env.ASYA_HANDLER?.trim() && !env.ASYA_PROCESS_MODULE?.trim()) {
    throw new UsageError('no handler: pass --handler module.function (or module.Class.method), or set ASYA_HANDLER');
  }
  const parsed = parseConfig(env);
  if (!parsed.ok) throw new UsageError(parsed.errors.join('; '));
  return parsed.config;
}

export const handlerOptions = {
  handler: { type: 'string' },
  mode: { type: 'string' },
  python: { type: 'string' },
  'log-level': { type: 'string' },
  codec: { type: 'string' },
} as const;

export const handlerOptionsHelp = `  --handler SPEC     module.function or module.Class.method (default: $ASYA_HANDLER); modules
                     are imported from the current directory and PYTHONPATH
  --mode MODE        payload (default) or envelope (default: $ASYA_HANDLER_MODE)
  --python PATH      the interpreter (default: $ASYA_PYTHONEXECUTABLE, else python3 on PATH)
  --codec CODEC      auto, json or orjson (default: $ASYA_JSON_CODEC, else auto)
  --log-level LEVEL  DEBUG, INFO, WARNING, ERROR (default: $ASYA_LOG_LEVEL, else INFO)`;
