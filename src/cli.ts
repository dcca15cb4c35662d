#!/usr/bin/env node
/**
 * `asya-runtime`: the runtime with no command, `call`, `check` and `send` with one (cli/main.ts).
 *
 * The runtime starts Python first, then loads the rest of itself: the interpreter's start runs
 * while Node loads the supervisor, instead of after it (docs/performance.md, "Cold start"). So this
 * module imports only what starting Python needs; everything else is loaded afterwards.
 */
import './no-debugger.js'; // first: see there
import './early-signals.js'; // second: a stop during the load is held for serve()
import { mark } from './startup.js';
import { EarlyPython } from './worker/spawn.js';

mark('node_started');
const argv = process.argv.slice(2);
const early = argv.length === 0 ? EarlyPython.start(process.env) : null;
if (early) mark('python_spawned');
void import('./cli/main.js').then(({ run }) => run(argv, early));
