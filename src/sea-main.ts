/**
 * Entry point of the single executable (scripts/package.mjs bundles this file). The shim travels
 * inside the executable as an asset; the CLI is loaded only after it is in place.
 */
import './no-debugger.js'; // first: see there
import { getAsset, isSea } from 'node:sea';
import { SHIM_FILE, useEmbeddedShim } from './worker/shim.js';

if (isSea()) useEmbeddedShim(getAsset(SHIM_FILE, 'utf8'));
void import('./cli.js');
