/**
 * Where the Python shim lives. From a checkout or npm install it is the file in python-shim/;
 * the single executable (see docs/deploy) carries it embedded and writes it out first.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHIM_FILE = 'asya_shim.py';

export function locateShim(): string {
  const file = fileURLToPath(new URL(`../python-shim/${SHIM_FILE}`, import.meta.url));
  if (!existsSync(file)) throw new Error(`the Python shim is missing: expected ${file}`);
  return file;
}
