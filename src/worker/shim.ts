/**
 * How Python is told to run the shim. From a checkout or an npm install it is the file in
 * python-shim/. The single executable carries the shim as an embedded asset and hands it to
 * Python with `-c`, so nothing has to be written anywhere (read-only images work).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHIM_FILE = 'asya_shim.py';

/** Interpreter flags: unbuffered pipes, and a Python traceback on a segfault. */
const PYTHON_FLAGS = ['-u', '-X', 'faulthandler'];

/** Set by the executable's entry point (see scripts/package.mjs) to the embedded shim source. */
let embeddedSource: string | null = null;

export function useEmbeddedShim(source: string): void {
  embeddedSource = source;
}

/** Arguments after the interpreter's path that start the shim. */
export function shimArguments(): string[] {
  if (embeddedSource !== null) return [...PYTHON_FLAGS, '-c', embeddedSource];
  const file = fileURLToPath(new URL(`../../python-shim/${SHIM_FILE}`, import.meta.url));
  if (!existsSync(file)) throw new Error(`the Python shim is missing: expected ${file}`);
  return [...PYTHON_FLAGS, file];
}
