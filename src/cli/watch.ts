/**
 * `call --watch`: reload the Python process (the supervisor's recycle path) when a source file of
 * the handler's changes, and send the messages again. A handler that does not load ends nothing: a
 * failed reload leaves the runtime up until the next change; a failed first load has stopped its
 * runtime, so the next change starts a fresh one. Only Ctrl-C (or the runtime failing on its own
 * once it has served) ends the watch. What is watched is watch-dirs.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ExitCode, type FatalError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RunningRuntime } from '../runtime/runtime.js';
import type { ReadyInfo } from '../worker/worker.js';
import { NoAnswerError } from './messages.js';
import { say } from './report.js';
import { DirectoryWatch, isInstalled } from './watch-dirs.js';

/** Editors write a file in several steps (truncate, write, rename): one reload for all of them. */
const WATCH_DEBOUNCE_MS = 150;

export interface WatchOptions {
  /** Start a runtime on the handler: the first one, and a fresh one after each failed first load. */
  start(): RunningRuntime;
  /** Send the messages to the runtime now serving, printing the answers. */
  send(): Promise<boolean>;
  /** The handler spec and the PYTHONPATH it is imported with: where its module is, before it loads. */
  handler: string;
  pythonPath: string | undefined;
  /** --watch-dir directories, watched whatever else is. */
  extraDirs: string[];
  log: Logger;
}

/**
 * The directories to watch once the handler has loaded: the import path entry its module was found in
 * (above its packages, namespace packages too, so sibling modules count) and the --watch-dir ones. An
 * entry inside an installed environment (site-packages) is not the user's to edit: not watched. Null
 * when the module has no file to find it by.
 */
export function watchRoots(loaded: ReadyInfo | null, extra: string[]): string[] | null {
  if (!loaded?.module_file) return null;
  const root = loaded.module_root ?? path.dirname(loaded.module_file);
  return [...new Set([...(isInstalled(root) ? [] : [root]), ...extra])];
}

/**
 * The directories to watch while the handler has not loaded (there may be no module file yet): the
 * first directory of its import path (the current one, then PYTHONPATH's) that holds its top-level
 * module or package, else the current directory; after a failed load the current directory as well;
 * and the --watch-dir ones.
 */
export function expectedRoots(
  handler: string,
  pythonPath: string | undefined,
  extra: string[],
  failed: boolean,
): string[] {
  const top = handler.split('.')[0] ?? '';
  const cwd = process.cwd();
  const bases = [cwd, ...(pythonPath ?? '').split(path.delimiter).filter(Boolean)].map((b) => path.resolve(b));
  const holder = bases
    .filter((base) => !isInstalled(base))
    .find(
      (base) =>
        top !== '' &&
        (fs.existsSync(path.join(base, `${top}.py`)) ||
          (fs.statSync(path.join(base, top), { throwIfNoEntry: false })?.isDirectory() ?? false)),
    );
  return [...new Set([...(holder === undefined || failed ? [cwd] : []), ...(holder ? [holder] : []), ...extra])];
}

const shown = (dirs: string[]) => dirs.map((r) => path.relative(process.cwd(), r) || '.').join(', ');

export async function watch(options: WatchOptions): Promise<number> {
  const { send, log, extraDirs } = options;
  let runtime: RunningRuntime | null = null;
  /** Ctrl-C (or SIGTERM) was received. */
  let stopped = false;
  /** The last file changed, waiting for the debounce. */
  let changed: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  /** The reloads and sends of a serving runtime, one after the other. */
  let chain = Promise.resolve();
  /** Whether the runtime now running has served: changes then reload it. */
  let serving = false;
  /** A load, a reload or a message under way: a change then does not wait for it (it may never end). */
  let busy = false;
  /** The change that stopped a busy runtime: the next one starts at once, for it. */
  let restartFor: string | null = null;
  /** Set while waiting for a change to try a failed first load again. */
  let wake: ((file: string | null) => void) | null = null;
  let announced = '';

  const whileBusy = async <T>(work: () => Promise<T>): Promise<T> => {
    busy = true;
    try {
      return await work();
    } finally {
      busy = false;
    }
  };
  const cycle = async () => {
    try {
      await whileBusy(send);
    } catch (err) {
      if (!(err instanceof NoAnswerError) || stopped) throw err;
      if (restartFor === null) say(`WATCH  ${err.message}`); // else: its runtime was stopped for a change
    }
  };
  const reload = async (file: string) => {
    if (stopped || !runtime || restartFor !== null) return;
    say(`RELOAD  ${file} changed: restarting the Python process`);
    let ready: ReadyInfo;
    try {
      ready = await whileBusy(() => (runtime as RunningRuntime).reload(`${file} changed`));
    } catch (err) {
      if (stopped || restartFor !== null) return;
      const fatal = err as FatalError;
      const traceback = typeof fatal.fields?.traceback === 'string' ? `\n${fatal.fields.traceback.trimEnd()}` : '';
      say(`RELOAD  failed: ${fatal.message}${traceback}\nRELOAD  waiting for the next change`);
      return;
    }
    say(`RELOAD  handler loaded in ${ready.load_ms} ms (pid ${ready.pid})`);
    follow(runtime);
    await cycle();
  };
  /**
   * A change. Between messages, the serving runtime reloads its Python process (close() runs). While a
   * load or a message is under way, which may never end (the very bug being fixed), that runtime is
   * stopped at once and a fresh one started.
   */
  const changedFile = (file: string) => {
    if (stopped) return;
    if (wake) return wake(file);
    if (runtime && (busy || !serving)) {
      if (restartFor === null) {
        restartFor = file;
        void runtime.shutdown(`${file} changed`, 0);
      }
      return;
    }
    if (serving) chain = chain.then(() => reload(file));
  };
  const dirs = new DirectoryWatch({
    log,
    onChange: (file) => {
      if (stopped) return;
      changed = path.relative(process.cwd(), file) || file;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        const name = changed!;
        changed = null;
        changedFile(name);
      }, WATCH_DEBOUNCE_MS);
    },
  });
  /**
   * After each load, the loaded module's directories (it may be found elsewhere than expected, or move);
   * the WATCH line again only when they are not the ones last said.
   */
  const follow = (served: RunningRuntime) => {
    const roots =
      watchRoots(served.loaded(), extraDirs) ?? expectedRoots(options.handler, options.pythonPath, extraDirs, false);
    dirs.setRoots(roots);
    const line =
      roots.length > 0
        ? `WATCH  watching ${shown(roots)} for .py changes; Ctrl-C to stop`
        : `WATCH  the handler's module is installed (${served.loaded()?.module_root ?? 'site-packages'}), not watched: pass --watch-dir DIR; Ctrl-C to stop`;
    if (line !== announced) say(line);
    announced = line;
  };

  const interrupt = () => {
    stopped = true;
    if (runtime) void runtime.shutdown('interrupted', 0); // the terminal back now, as without --watch
    wake?.(null);
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    // While the handler loads the first time, its expected place is watched: an edit then is not lost,
    // and a load that never ends (the bug being fixed) is replaced by the next one.
    const first = expectedRoots(options.handler, options.pythonPath, extraDirs, false);
    dirs.setRoots(first);
    say(`WATCH  loading ${options.handler}: watching ${shown(first)} for .py changes meanwhile; Ctrl-C to stop`);
    for (let attempt = 1; ; attempt++) {
      serving = false;
      runtime = options.start();
      const ready = await whileBusy(() => (runtime as RunningRuntime).ready);
      if (ready) {
        const loaded = runtime.loaded();
        if (attempt > 1 && loaded) say(`RELOAD  handler loaded in ${loaded.load_ms} ms (pid ${loaded.pid})`);
        serving = true;
        follow(runtime);
        chain = chain.then(cycle);
      }
      const code = await runtime.done;
      await chain.catch(() => undefined);
      chain = Promise.resolve();
      runtime = null;
      if (stopped) return ready ? code : ExitCode.ok;
      if (restartFor !== null) {
        say(`RELOAD  ${restartFor} changed: stopped the Python process at work, starting afresh`);
        restartFor = null;
        continue;
      }
      // Only a handler that did not load can be fixed by a save (not a missing Python, not the socket).
      if (ready || code !== ExitCode.handler) return code;
      // The runtime printed why (its FATAL line) and has exited; the next change starts another.
      const roots = expectedRoots(options.handler, options.pythonPath, extraDirs, true);
      dirs.setRoots(roots);
      announced = `WATCH  the handler did not load (above): watching ${shown(roots)} for .py changes to load it again; Ctrl-C to stop`;
      say(announced);
      const file = await new Promise<string | null>((resolve) => (wake = resolve));
      wake = null;
      if (stopped || file === null) return 0;
      say(`RELOAD  ${file} changed: loading the handler again`);
    }
  } finally {
    stopped = true;
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    if (timer) clearTimeout(timer);
    dirs.close();
    await chain.catch(() => undefined);
  }
}
