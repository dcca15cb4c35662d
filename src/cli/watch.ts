/**
 * `call --watch`: reload the Python process (the supervisor's recycle path) when a source file of
 * the handler's changes, and send the messages again. What is watched is watch-dirs.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FatalError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RunningRuntime } from '../runtime/runtime.js';
import type { ReadyInfo } from '../worker/worker.js';
import { NoAnswerError } from './messages.js';
import { say } from './report.js';
import { DirectoryWatch } from './watch-dirs.js';

/** Editors write a file in several steps (truncate, write, rename): one reload for all of them. */
const WATCH_DEBOUNCE_MS = 150;

/**
 * The directories to watch: the one the handler's module was imported from (above its packages,
 * so sibling modules count too) and the --watch-dir ones.
 */
export function watchRoots(loaded: ReadyInfo | null, extra: string[]): string[] {
  const roots = new Set(extra);
  if (loaded?.module_file) {
    let dir = path.dirname(loaded.module_file);
    while (fs.existsSync(path.join(dir, '__init__.py')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    roots.add(dir);
  }
  return [...roots];
}

export async function watch(
  runtime: RunningRuntime,
  send: () => Promise<boolean>,
  extraDirs: string[],
  log: Logger,
): Promise<number> {
  const roots = watchRoots(runtime.loaded(), extraDirs);
  let changed: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let chain = Promise.resolve();
  let stopped = false;

  const cycle = async () => {
    try {
      await send();
    } catch (err) {
      if (!(err instanceof NoAnswerError) || stopped) throw err;
      say(`WATCH  ${err.message}`);
    }
  };
  const reload = async (file: string) => {
    if (stopped) return;
    say(`RELOAD  ${file} changed: restarting the Python process`);
    let ready: ReadyInfo;
    try {
      ready = await runtime.reload(`${file} changed`);
    } catch (err) {
      if (stopped) return;
      const fatal = err as FatalError;
      const traceback = typeof fatal.fields?.traceback === 'string' ? `\n${fatal.fields.traceback.trimEnd()}` : '';
      say(`RELOAD  failed: ${fatal.message}${traceback}\nRELOAD  waiting for the next change`);
      return;
    }
    say(`RELOAD  handler loaded in ${ready.load_ms} ms (pid ${ready.pid})`);
    await cycle();
  };
  const onChange = (file: string) => {
    if (stopped) return;
    changed = path.relative(process.cwd(), file) || file;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const file = changed!;
      changed = null;
      chain = chain.then(() => reload(file));
    }, WATCH_DEBOUNCE_MS);
  };

  const dirs = new DirectoryWatch({ log, onChange });
  dirs.setRoots(roots);
  say(
    roots.length > 0
      ? `WATCH  watching ${roots.map((r) => path.relative(process.cwd(), r) || '.').join(', ')} for .py changes; Ctrl-C to stop`
      : 'WATCH  the handler has no module file to watch: pass --watch-dir DIR; Ctrl-C to stop',
  );

  chain = chain.then(cycle);
  const code = await runtime.done;
  stopped = true;
  if (timer) clearTimeout(timer);
  dirs.close();
  await chain.catch(() => undefined);
  return code;
}
