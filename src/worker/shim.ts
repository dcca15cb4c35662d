/**
 * How Python is told to run the shim. From a checkout or an npm install it is the file in
 * python-shim/. The single executable carries the shim as an embedded asset: Python gets a few
 * lines with `-c` that read the shim's source from the channel (stdin, length-prefixed, before the
 * first message) and run it, so nothing is written anywhere (read-only images work) and `ps` shows a
 * short command line instead of 17 KB of source.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHIM_FILE = 'asya_shim.py';

/** Interpreter flags: unbuffered pipes, and a Python traceback on a segfault. */
const PYTHON_FLAGS = ['-u', '-X', 'faulthandler'];

/** Reads exactly the length-prefixed source from fd 0 (unbuffered, so the channel's bytes stay in the pipe) and runs it. */
const BOOTSTRAP = `import os
def _asya_read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise SystemExit(0)
        data += chunk
    return data
exec(compile(_asya_read(int.from_bytes(_asya_read(4), "big")), "${SHIM_FILE}", "exec"))`;

/** Set by the executable's entry point (see scripts/package.mjs) to the embedded shim source. */
let embeddedSource: Buffer | null = null;

export function useEmbeddedShim(source: string): void {
  embeddedSource = Buffer.from(source);
}

export interface ShimLaunch {
  /** Arguments after the interpreter's path. */
  args: string[];
  /** What the worker writes to the shim's stdin first: the length-prefixed source, when it is not a file. */
  preamble: Buffer | null;
}

/** The lines around the porter's section in the shim (python-shim/src/porter.py), and how it is run alone. */
const PORTER_BEGIN = '# >>> porter\n';
const PORTER_END = '# <<< porter\n';
const PORTER_ENTRY = '\nsys.exit(porter_main())\n';
let porter: ShimLaunch | null = null;

/**
 * How Python runs a porter (ASYA_PRELOAD): the shim's porter section alone, sent on stdin as the
 * executable sends the whole shim (the porter reads it before it hands its stdin to the template), with
 * -S: it imports nothing from site-packages. A few hundred lines to compile instead of the whole shim:
 * about half of a porter's start on the benchmark VM, paid at every fork.
 */
export function porterLaunch(): ShimLaunch {
  if (porter) return porter;
  const source = embeddedSource ?? readFileSync(shimFile());
  const text = source.toString('utf8');
  const begin = text.indexOf(PORTER_BEGIN);
  const end = text.indexOf(PORTER_END, begin);
  if (begin < 0 || end < 0) throw new Error(`the Python shim has no porter section (${PORTER_BEGIN.trim()})`);
  const body = Buffer.from(text.slice(begin, end) + PORTER_ENTRY);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  porter = { args: ['-S', ...PYTHON_FLAGS, '-c', BOOTSTRAP], preamble: Buffer.concat([length, body]) };
  return porter;
}

function shimFile(): string {
  const file = fileURLToPath(new URL(`../../python-shim/${SHIM_FILE}`, import.meta.url));
  if (!existsSync(file)) throw new Error(`the Python shim is missing: expected ${file}`);
  return file;
}

export function shimLaunch(): ShimLaunch {
  if (embeddedSource !== null) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(embeddedSource.length);
    return { args: [...PYTHON_FLAGS, '-c', BOOTSTRAP], preamble: Buffer.concat([length, embeddedSource]) };
  }
  return { args: [...PYTHON_FLAGS, shimFile()], preamble: null };
}
