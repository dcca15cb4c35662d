/**
 * How Python is told to run the shim. From a checkout or an npm install it is the file in
 * python-shim/. The single executable carries the shim as an embedded asset: Python gets a few
 * lines with `-c` that read the shim's source from the channel (stdin, length-prefixed, before the
 * first message) and run it, so nothing is written anywhere (read-only images work) and `ps` shows a
 * short command line instead of 17 KB of source.
 */
import { existsSync } from 'node:fs';
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

export function shimLaunch(): ShimLaunch {
  if (embeddedSource !== null) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(embeddedSource.length);
    return { args: [...PYTHON_FLAGS, '-c', BOOTSTRAP], preamble: Buffer.concat([length, embeddedSource]) };
  }
  const file = fileURLToPath(new URL(`../../python-shim/${SHIM_FILE}`, import.meta.url));
  if (!existsSync(file)) throw new Error(`the Python shim is missing: expected ${file}`);
  return { args: [...PYTHON_FLAGS, file], preamble: null };
}
