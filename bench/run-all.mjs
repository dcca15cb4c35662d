#!/usr/bin/env node
// `npm run bench`: the five benchmarks, one after the other, each side by side with the upstream
// runtime in its own interleaved rounds (run together they would compete for the same cores):
//   bench/bench.mjs       message sizes 100 B to 10 MB: ours, the design floor, the peer
//   bench/pool.mjs        ASYA_WORKERS: throughput with a CPU-bound handler, delay after a worker dies
//   bench/cold-start.mjs  exec to ready file: the executable (if `npm run package` built it), node dist/cli.js, the peer
//   bench/preload.mjs     ASYA_PRELOAD beside spawn mode: memory (PSS), replacement after a kill, recycling
//   bench/pipeline.mjs    through the real Go sidecar and RabbitMQ (../shared/pipeline; skipped without it):
//                         the design floor, ours, the peer at 100 B, 10 KB, 1 MB
// `--quick` goes to all of them; any other argument goes to bench/bench.mjs only (see its header).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick') ? ['--quick'] : [];
const runs = [
  ['bench.mjs', args],
  ['pool.mjs', quick],
  ['cold-start.mjs', quick],
  ['preload.mjs', quick],
  ['pipeline.mjs', quick],
];
let failed = 0;
for (const [script, scriptArgs] of runs) {
  console.log(`\n=== node bench/${script} ${scriptArgs.join(' ')}`);
  const run = spawnSync(process.execPath, [path.join(here, script), ...scriptArgs], { stdio: 'inherit' });
  if (run.status !== 0) {
    console.log(`bench/${script} failed (exit ${run.status ?? run.signal})`);
    failed++;
  }
}
process.exit(failed > 0 ? 1 : 0);
