/**
 * cli/watch-dirs.ts: which directories `call --watch` watches, one watch per directory, on real
 * directories (the events are the kernel's): the skip rules, the cap and its WARNING, directories that
 * appear, go or are renamed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { callHelp } from '../../src/cli/call.js';
import { DirectoryWatch, SKIPPED_NAMES, skipReason, WATCH_MAX_DIRS } from '../../src/cli/watch-dirs.js';
import type { LogSink } from '../../src/log-sink.js';
import { createLogger } from '../../src/logger.js';
import { ROOT, tempDir, until } from '../helpers.js';

interface Line {
  level: string;
  msg: string;
  directories?: number;
}

/** A DirectoryWatch on `roots` whose changes and log lines are recorded. */
function watching(roots: string[], maxDirs?: number) {
  const changes: string[] = [];
  const logged: Line[] = [];
  const sink: LogSink = {
    kind: 'file',
    onRecovered: null,
    write: (text) => logged.push(JSON.parse(text) as Line),
    flush: async () => {},
  };
  const dirs = new DirectoryWatch({
    log: createLogger('debug', 'json', sink),
    maxDirs,
    onChange: (f) => changes.push(f),
  });
  dirs.setRoots(roots);
  return { dirs, changes, logged };
}

describe('call --watch: the directories watched', () => {
  it('skips what holds no user source: hidden, __pycache__, site-packages, node_modules, venv, virtualenvs, conda environments', () => {
    const dir = tempDir();
    const made = (name: string, file?: string) => {
      fs.mkdirSync(path.join(dir, name), { recursive: true });
      if (file) fs.writeFileSync(path.join(dir, name, file), '');
      return path.join(dir, name);
    };
    assert.equal(skipReason(made('.git')), 'hidden');
    assert.equal(skipReason(made('__pycache__')), '__pycache__');
    assert.equal(skipReason(made('site-packages')), 'site-packages');
    assert.equal(skipReason(made('node_modules')), 'node_modules');
    assert.equal(skipReason(made('venv')), 'venv');
    assert.equal(skipReason(made('tools-env', 'pyvenv.cfg')), 'virtualenv');
    assert.equal(skipReason(made('miniconda/conda-meta')), null);
    assert.equal(skipReason(path.join(dir, 'miniconda')), 'conda environment');
    assert.equal(skipReason(made('models', '__init__.py')), null);
  });

  it('docs/handler-guide.md and call --help state these rules and the cap', () => {
    const guide = fs.readFileSync(path.join(ROOT, 'docs', 'handler-guide.md'), 'utf8').replace(/\s+/g, ' ');
    for (const name of [...SKIPPED_NAMES, 'pyvenv.cfg', 'conda-meta']) assert.ok(guide.includes(`\`${name}\``), name);
    assert.ok(guide.includes(`At most ${WATCH_MAX_DIRS} directories are watched`));
    const help = callHelp.replace(/\s+/g, ' ');
    for (const name of [...SKIPPED_NAMES, 'pyvenv.cfg', 'conda-meta'])
      assert.ok(help.includes(name), `--help: ${name}`);
    assert.ok(help.includes(`at most ${WATCH_MAX_DIRS} directories`));
    const troubleshooting = fs.readFileSync(path.join(ROOT, 'docs', 'troubleshooting.md'), 'utf8');
    assert.ok(troubleshooting.includes(`watch: ${WATCH_MAX_DIRS} directories is the most --watch follows`));
  });

  it('watches at most maxDirs, the shallowest first, with one WARNING; the count is a DEBUG line', () => {
    const dir = tempDir();
    for (let i = 0; i < 5; i++) fs.mkdirSync(path.join(dir, `a${i}`, 'deep', 'deeper'), { recursive: true });
    const { dirs, logged } = watching([dir], 6);
    try {
      assert.equal(dirs.count, 6, 'the root and its five children');
      const warnings = logged.filter((l) => l.level === 'warn');
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!.msg, /6 directories is the most --watch follows: changes in the directories not yet/);
      assert.equal(logged.find((l) => l.level === 'debug')?.msg, 'watch: watching 6 directories');
      dirs.setRoots([dir]);
      assert.equal(logged.filter((l) => l.level === 'warn').length, 1, 'said once');
      assert.equal(logged.filter((l) => l.level === 'debug').length, 1, 'the same count is not said again');
    } finally {
      dirs.close();
    }
  });

  it('a directory that appears is watched (a source already in it is a change); one that goes or is renamed is followed', async () => {
    const dir = tempDir();
    const { dirs, changes } = watching([dir]);
    try {
      assert.equal(dirs.count, 1);
      // created with its files before the watcher hears of it: the walk finds the source
      fs.mkdirSync(path.join(dir, 'pkg', 'inner'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'pkg', 'inner', 'mod.py'), '');
      await until('the new package', () => changes.includes(path.join(dir, 'pkg', 'inner', 'mod.py')));
      assert.equal(dirs.count, 3);
      fs.writeFileSync(path.join(dir, 'pkg', 'inner', 'mod.py'), 'x = 1\n');
      // renamed: the old paths are dropped, the new ones watched, and the move is a change
      changes.length = 0;
      fs.renameSync(path.join(dir, 'pkg'), path.join(dir, 'renamed'));
      await until('the renamed package', () => dirs.count === 3 && changes.length > 0);
      changes.length = 0;
      fs.writeFileSync(path.join(dir, 'renamed', 'inner', 'mod.py'), 'x = 2\n');
      await until('a change under its new name', () => changes.includes(path.join(dir, 'renamed', 'inner', 'mod.py')));
      // gone: dropped, and a change (it held sources)
      changes.length = 0;
      fs.rmSync(path.join(dir, 'renamed'), { recursive: true });
      await until('the removed package', () => dirs.count === 1 && changes.length > 0);
      // a new directory with no source: watched, no change
      fs.mkdirSync(path.join(dir, 'data'));
      fs.mkdirSync(path.join(dir, '.cache'));
      await until('the data directory', () => dirs.count === 2);
      assert.deepEqual(
        changes.filter((c) => !c.startsWith(path.join(dir, 'renamed'))),
        [],
        'only the removal was a change',
      );
    } finally {
      dirs.close();
    }
    assert.equal(dirs.count, 0);
  });
});
