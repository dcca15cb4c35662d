/**
 * The runtime's configuration for `call` and `check`: the caller's ASYA_* environment, with the
 * command's flags on top, parsed by the same schema as the injected runtime (so a bad value gets
 * the same message).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type Config, parseConfig } from '../config.js';
import type { ReadyInfo } from '../worker/worker.js';
import { readEnvFile } from './env-file.js';
import { UsageError } from './messages.js';

export interface HandlerFlags {
  handler?: string;
  mode?: string;
  python?: string;
  'log-level'?: string;
  timeout?: string;
  codec?: string;
  args?: string;
  'env-file'?: string;
}

/**
 * The environment, then --env-file's variables over it, then the flags over both. The file's variables
 * go into this process's environment, so the handler's Python process, which inherits it, sees them too.
 */
export function handlerEnvironment(flags: HandlerFlags, socketDir: string | null): NodeJS.ProcessEnv {
  if (flags['env-file'] !== undefined) Object.assign(process.env, readEnvFile(flags['env-file']));
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
  set('ASYA_HANDLER_ARGS', flags.args);
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
  args: { type: 'string' },
  'env-file': { type: 'string' },
} as const;

export const handlerOptionsHelp = `  --handler SPEC     module.function or module.Class.method (default: $ASYA_HANDLER); call and
                     check import modules from the current directory first, then PYTHONPATH
                     (the deployed runtime: PYTHONPATH only)
  --mode MODE        payload (default) or envelope (default: $ASYA_HANDLER_MODE)
  --python PATH      the interpreter (default: $ASYA_PYTHONEXECUTABLE, else python3 on PATH)
  --codec CODEC      auto, json or orjson (default: $ASYA_JSON_CODEC, else auto)
  --log-level LEVEL  DEBUG, INFO, WARNING, ERROR (default: $ASYA_LOG_LEVEL, else INFO)
  --args JSON        keyword arguments for the class's constructor (default: $ASYA_HANDLER_ARGS)
  --env-file FILE    variables from a file (KEY=VALUE lines, as docker --env-file and .env files),
                     over the environment; the flags win over both; a bare KEY passes the
                     environment's value through. Node.js reads FILE too (it takes --env-file
                     anywhere on the command line): one that cannot be read ends the command with
                     exit 9 ("FILE: not found"), and NODE_OPTIONS there applies to the CLI itself`;

/**
 * Where `call` and `check` look for modules before PYTHONPATH: the current directory, as `python -m`
 * does. One rule for both, so a handler that `call` runs, `check` passes.
 */
export const LOCAL_PATH = (): string[] => [process.cwd()];

/**
 * The note `check` prints when the module was found through the current directory (its import path
 * entry is the current directory), which the deployed runtime does not search: the pod needs it on
 * PYTHONPATH, or would import another file of that name from there.
 */
export function onlyThroughWorkingDirectory(ready: ReadyInfo, pythonPath = ''): string | null {
  const { module_file: file, module_root: root } = ready;
  if (!file || !root) return null;
  const cwd = process.cwd();
  if (path.resolve(root) !== cwd) return null;
  const entries = pythonPath
    .split(path.delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => path.resolve(dir));
  const shown = path.relative(cwd, file);
  // What a.b names below an entry: a/b.py, a/b/__init__.py, or the package directory a/b. The pod
  // imports it from the first entry that holds it: the current directory's own, or another file.
  const relative = path.relative(root, file).replace(/(\/__init__)?\.py[cw]?$|\.[^/.]*\.so$/, '');
  let other: string | undefined;
  for (const dir of entries) {
    if (dir === cwd) return null;
    other = [`${relative}.py`, path.join(relative, '__init__.py'), relative]
      .map((p) => path.join(dir, p))
      .find((candidate) => fs.existsSync(candidate));
    if (other !== undefined) break;
  }
  const found = `note: ${shown} was found in the current directory, which the deployed runtime does not search`;
  return other !== undefined
    ? `${found}: with this PYTHONPATH it would import ${other} instead`
    : `${found}: set PYTHONPATH=${cwd} (or the image's directory that holds it) in the pod`;
}
