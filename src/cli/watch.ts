/**
 * `call --watch`: reload the Python process (the supervisor's recycle path) when a source file of
 * the handler's changes, and send the messages again.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FatalError } from '../errors.js';
import type { RunningRuntime } from '../runtime/runtime.js';
import type { ReadyInfo } from '../worker/worker.js';
import { NoAnswerError } from './messages.js';
import { say } from './report.js';

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

/** A .py file of the user's, not one in a cache, a virtualenv or a hidden directory. */
function isSource(relative: string): boolean {
  if (!relative.endsWith('.py')) return false;
  return !relative
    .split(path.sep)
    .some(
      (part) => part === '__pycache__' || part === 'site-packages' || part === 'node_modules' || part.startsWith('.'),
    );
}

export async function watch(
  runtime: RunningRuntime,
  send: () => Promise<boolean>,
  extraDirs: string[],
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
  const onChange = (root: string, name: string | Buffer | null) => {
    if (name === null || stopped) return;
    const relative = name.toString();
    if (!isSource(relative)) return;
    changed = path.relative(process.cwd(), path.join(root, relative)) || relative;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const file = changed!;
      changed = null;
      chain = chain.then(() => reload(file));
    }, WATCH_DEBOUNCE_MS);
  };

  const watchers: fs.FSWatcher[] = [];
  for (const root of roots) {
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(root, { recursive: true }, (_event, name) => onChange(root, name));
    } catch {
      // recursive watching is not available here: the directory itself only
      watcher = fs.watch(root, (_event, name) => onChange(root, name));
    }
    watcher.on('error', (err) => say(`WATCH  ${root}: ${err.message}`));
    watchers.push(watcher);
  }
  say(
    roots.length > 0
      ? `WATCH  watching ${roots.map((r) => path.relative(process.cwd(), r) || '.').join(', ')} for .py changes; Ctrl-C to stop`
      : 'WATCH  the handler has no module file to watch: pass --watch-dir DIR; Ctrl-C to stop',
  );

  chain = chain.then(cycle);
  const code = await runtime.done;
  stopped = true;
  if (timer) clearTimeout(timer);
  for (const w of watchers) w.close();
  await chain.catch(() => undefined);
  return code;
}
