/**
 * What `call --watch` watches: the directories of the handler's sources, one non-recursive watch each.
 *
 * A watch is on a DIRECTORY, never on a file: inotify on a directory reports every name that changes in
 * it, so a save that replaces the file (rename over it, delete and create, `git checkout`) is seen as
 * surely as one that writes in place. (Node 20's recursive fs.watch on Linux watches each file's inode;
 * a file renamed over is a new inode it never watches, so later saves went unseen.)
 *
 * The directories are found by walking the roots: every directory below them except those that hold no
 * user source (SKIPPED_NAMES, hidden ones, virtualenvs and conda environments); symbolic links are not
 * followed. A directory that appears later is walked and watched at once (a .py file already in it is a
 * change: it was written before its watch existed); one that goes is dropped. At most `maxDirs` are
 * watched, the shallowest first, with a WARNING when more were found: each watch is one inotify watch
 * of the user's (8 192 on many hosts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.js';

/** Where Python installs packages: not the user's sources, below a root or as one. */
const INSTALLED_NAMES: ReadonlySet<string> = new Set(['site-packages', 'dist-packages']);

/** Directories that never hold the handler's own sources. */
export const SKIPPED_NAMES: ReadonlySet<string> = new Set(['__pycache__', ...INSTALLED_NAMES, 'node_modules', 'venv']);

/** A directory of installed packages, or one inside it. */
export function isInstalled(dir: string): boolean {
  return dir.split(path.sep).some((part) => INSTALLED_NAMES.has(part));
}

/** The most directories one `call --watch` watches. */
export const WATCH_MAX_DIRS = 1000;

/** Why the walk does not enter `dir`, or null when it may hold the user's sources. */
export function skipReason(dir: string): string | null {
  const name = path.basename(dir);
  if (name.startsWith('.')) return 'hidden';
  if (SKIPPED_NAMES.has(name)) return name;
  if (fs.existsSync(path.join(dir, 'pyvenv.cfg'))) return 'virtualenv';
  if (fs.existsSync(path.join(dir, 'conda-meta'))) return 'conda environment';
  return null;
}

/** A file whose change reloads the handler. */
export function isSourceFile(name: string): boolean {
  return name.endsWith('.py');
}

export interface DirectoryWatchOptions {
  /** A source file changed, or a directory holding one appeared or went: its absolute path. */
  onChange(file: string): void;
  log: Logger;
  maxDirs?: number;
}

interface Watched {
  watcher: fs.FSWatcher;
  /** A .py file was in it when it was walked, or changed in it since. */
  sources: boolean;
}

export class DirectoryWatch {
  private readonly watched = new Map<string, Watched>();
  private roots: string[] = [];
  private readonly maxDirs: number;
  /** The cap, or the system's inotify limit, was reached: said once. */
  private full = false;
  private closed = false;
  /** The count and roots of the last DEBUG line: said again only when either changes. */
  private said = '';
  /**
   * Each root's parent, for the root's own name: a root deleted and made again (`rm -rf src; git
   * checkout src`, a tool that replaces the directory) is a new directory the old watches do not see.
   */
  private readonly parents = new Map<string, { watcher: fs.FSWatcher; identity: string | null }>();

  constructor(private readonly options: DirectoryWatchOptions) {
    this.maxDirs = options.maxDirs ?? WATCH_MAX_DIRS;
  }

  /** How many directories are watched. */
  get count(): number {
    return this.watched.size;
  }

  /** Watch these roots and the directories below them: new ones are walked, the others' watches closed. */
  setRoots(roots: string[]): void {
    this.roots = [...new Set(roots.map((r) => path.resolve(r)))];
    const keep = new Set<string>();
    const skipped: string[] = [];
    this.walk(this.roots, keep, skipped);
    for (const dir of [...this.watched.keys()]) if (!keep.has(dir)) this.unwatch(dir);
    for (const [root, parent] of this.parents)
      if (!this.roots.includes(root)) {
        parent.watcher.close();
        this.parents.delete(root);
      }
    for (const root of this.roots) if (!this.parents.has(root)) this.watchParent(root);
    const said = `${this.watched.size} ${this.roots.join(path.delimiter)}`;
    if (said === this.said) return;
    this.said = said;
    this.options.log.debug(
      { directories: this.watched.size, roots: this.roots, skipped: skipped.slice(0, 20) },
      `watch: watching ${this.watched.size} ${this.watched.size === 1 ? 'directory' : 'directories'}`,
    );
  }

  close(): void {
    this.closed = true;
    for (const dir of [...this.watched.keys()]) this.unwatch(dir);
    for (const parent of this.parents.values()) parent.watcher.close();
    this.parents.clear();
  }

  private watchParent(root: string): void {
    const parent = path.dirname(root);
    if (parent === root) return;
    try {
      const watcher = fs.watch(parent, (_event, name) => {
        if (name !== null && name.toString() === path.basename(root)) this.rootEvent(root);
      });
      watcher.on('error', () => watcher.close());
      this.parents.set(root, { watcher, identity: identityOf(root) });
    } catch {
      // the parent is not readable or gone: the root's own watches still work
    }
  }

  /**
   * Something happened to a root's name in its parent: the root is walked afresh, with new watches (a
   * directory made again may reuse the old one's inode number, so its watch cannot be trusted), and
   * when it is another directory than before, that is a change.
   */
  private rootEvent(root: string): void {
    const entry = this.parents.get(root);
    if (this.closed || !entry) return;
    const identity = identityOf(root);
    const replaced = identity !== entry.identity;
    entry.identity = identity;
    const below = [...this.watched.keys()].filter((d) => d === root || d.startsWith(`${root}${path.sep}`));
    for (const d of below) this.unwatch(d);
    if (identity !== null) this.walk([root], new Set(this.watched.keys()), []);
    if (!replaced) return;
    this.options.log.debug({ directories: this.watched.size, root }, 'watch: a root directory was replaced');
    this.options.onChange(root);
  }

  /**
   * Breadth first from `start`, so the cap keeps the shallowest directories. Each directory reached is
   * added to `reached` and watched (unless it already is) BEFORE it is read: a file created meanwhile
   * is either read or reported. `skipped` collects what was left out. Returns the first source file
   * seen (a directory that appears after its files were written holds them).
   */
  private walk(start: string[], reached: Set<string>, skipped: string[]): string | null {
    let found: string | null = null;
    const queue = start.filter((dir) => fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory());
    for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
      if (reached.has(dir)) continue;
      if (!this.watched.has(dir) && !this.watch(dir)) {
        skipped.push(`${dir} (not watched: the limit is reached)`);
        break;
      }
      reached.add(dir);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // gone meanwhile (its parent's event drops it), or not ours to read
      }
      const source = entries.find((e) => !e.isDirectory() && isSourceFile(e.name));
      if (source) {
        const entry = this.watched.get(dir);
        if (entry) entry.sources = true;
        found ??= path.join(dir, source.name);
      }
      for (const entry of entries) {
        if (!entry.isDirectory()) continue;
        const sub = path.join(dir, entry.name);
        const why = skipReason(sub);
        if (why === null) queue.push(sub);
        else skipped.push(`${sub} (${why})`);
      }
    }
    return found;
  }

  /** Watch one directory; false when no more can be (the cap or the system limit), said once as a WARNING. */
  private watch(dir: string): boolean {
    if (this.closed) return false;
    if (this.watched.size >= this.maxDirs) {
      this.warnFull(`${this.maxDirs} directories is the most --watch follows`);
      return false;
    }
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, (_event, name) => this.onEvent(dir, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EMFILE') {
        this.warnFull(`the system refused another watch (${code}: fs.inotify.max_user_watches is reached)`);
        return false;
      }
      this.options.log.debug({ dir, err: (err as Error).message }, 'watch: cannot watch a directory');
      return true; // gone meanwhile, or not readable: the others still are
    }
    // A directory that went: its watch ends, unless the path is already watched again (a new directory
    // of the same name, whose watch this late error must not close).
    watcher.on('error', () => {
      if (this.watched.get(dir)?.watcher === watcher) this.unwatch(dir);
      else watcher.close();
    });
    this.watched.set(dir, { watcher, sources: false });
    return true;
  }

  private warnFull(why: string): void {
    if (this.full) return;
    this.full = true;
    this.options.log.warn(
      { directories: this.watched.size, roots: this.roots },
      `watch: ${why}: changes in the directories not yet watched are not seen (the shallowest are watched; pass the handler's own directory with --watch-dir, or run from it)`,
    );
  }

  private unwatch(dir: string): boolean {
    const entry = this.watched.get(dir);
    if (!entry) return false;
    entry.watcher.close();
    this.watched.delete(dir);
    return entry.sources;
  }

  private onEvent(dir: string, name: string | Buffer | null): void {
    if (this.closed || !this.watched.has(dir)) return;
    if (name === null) {
      // no name given (not on Linux): anything in it may have changed
      this.walk([dir], new Set([...this.watched.keys()].filter((d) => d !== dir)), []);
      this.options.onChange(dir);
      return;
    }
    const full = path.join(dir, name.toString());
    if (isSourceFile(full)) {
      this.watched.get(dir)!.sources = true;
      this.options.onChange(full);
      return;
    }
    if (!isDirectory(full) || skipReason(full) !== null) {
      // a directory that went (or is now one the walk skips): drop it and everything below it
      const below = [...this.watched.keys()].filter((d) => d === full || d.startsWith(`${full}${path.sep}`));
      if (below.length === 0) return;
      let sources = false;
      for (const d of below) sources = this.unwatch(d) || sources;
      this.options.log.debug({ directories: this.watched.size, dropped: full }, 'watch: dropped a directory');
      if (sources) this.options.onChange(full);
      return;
    }
    if (this.watched.has(full)) return;
    const before = this.watched.size;
    const found = this.walk([full], new Set(this.watched.keys()), []);
    if (this.watched.size !== before)
      this.options.log.debug({ directories: this.watched.size, added: full }, 'watch: watching a new directory');
    if (found !== null) this.options.onChange(found);
  }
}

/** Which directory is at `dir` (inode and birth time: an inode number alone is reused), or null when none. */
function identityOf(dir: string): string | null {
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  return st?.isDirectory() ? `${st.ino}:${st.birthtimeMs}` : null;
}

/** A directory itself, not a symbolic link to one (the walk does not follow links). */
function isDirectory(p: string): boolean {
  return fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}
