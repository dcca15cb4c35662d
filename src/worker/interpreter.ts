/**
 * Finds the Python interpreter the way a shell would: a name is looked up on PATH (which is how
 * venv and conda activation choose it), a path is used as given.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ExitCode, FatalError } from '../errors.js';

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function resolveInterpreter(name: string, envPath: string | undefined, fromVariable: boolean): string {
  const source = fromVariable ? `ASYA_PYTHONEXECUTABLE=${JSON.stringify(name)}` : `the default ${JSON.stringify(name)}`;
  const advice =
    'install Python 3.7+ in the image, or set ASYA_PYTHONEXECUTABLE to the interpreter (a name on PATH or an absolute path)';
  if (name.includes('/')) {
    const file = path.resolve(name);
    if (isExecutableFile(file)) return file;
    throw new FatalError(
      ExitCode.interpreter,
      `Python interpreter not found: ${source}: ${file} is not an executable file; ${advice}`,
      {
        tried: [file],
      },
    );
  }
  const dirs = (envPath ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const file = path.join(dir, name);
    if (isExecutableFile(file)) return file;
  }
  throw new FatalError(
    ExitCode.interpreter,
    `Python interpreter not found: ${source} is not on PATH (${dirs.join(path.delimiter) || 'PATH is empty'}); ${advice}`,
    { tried: dirs.map((d) => path.join(d, name)) },
  );
}
