#!/usr/bin/env node
// An A/B of the per-message path: this build beside other checkouts (their dist/cli.js, built), small
// messages, the same echo handler, rounds alternated so the machine's noise hits every build alike.
//
//   node bench/ab.mjs --baseline /path/to/checkout [--baseline ...] [--size 100] [--messages 3000] [--rounds 6]
//   node bench/ab.mjs --baseline ../shared/bench/design-floor.mjs   (a script is run as is)
//   node bench/ab.mjs --warmup 0 --messages 10000 ...   (from a fresh start, JIT warm-up included)
//
// Uses bench/client.c (one connection per message, as the sidecar); prints p50/p99 per build, the CPU
// per message of the runtime's whole process tree (every thread of the supervisor and of its Python
// processes, from schedstat) and of the supervisor's main thread alone, and the ratio of each to this
// build, median over rounds.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median, treeCpu } from './stats.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    baseline: { type: 'string', multiple: true, default: [] },
    size: { type: 'string', default: '100' },
    messages: { type: 'string', default: '3000' },
    // Messages each runtime handles before the measured ones; 0 measures from a fresh start (JIT included).
    warmup: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '6' },
    level: { type: 'string', default: 'INFO' },
    // stdlib json, as the design floor and the peer use; `orjson` for ours at its default.
    codec: { type: 'string', default: 'json' },
  },
});
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-ab-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
const client = path.join(work, 'client');
execFileSync('cc', ['-O2', '-pthread', '-o', client, path.join(root, 'bench', 'client.c')]);
fs.writeFileSync(path.join(work, 'ab_echo.py'), 'def echo(payload):\n    return payload\n');
const body = Buffer.from(
  JSON.stringify({
    id: 'ab',
    route: { actors: ['a', 'b'], current: 0 },
    payload: { text: 'x'.repeat(Math.max(0, Number(opt.size) - 40)) },
  }),
);
const head = Buffer.alloc(4);
head.writeUInt32BE(body.length);
fs.writeFileSync(path.join(work, 'frame'), Buffer.concat([head, body]));
const builds = [['this', root], ...opt.baseline.map((dir) => [path.basename(dir), path.resolve(dir)])];

async function measure(dir) {
  const sockDir = fs.mkdtempSync(path.join(work, 'rt-'));
  // A checkout runs its dist/cli.js; a script (the design floor, ../shared/bench/design-floor.mjs) runs as is.
  const entry = dir.endsWith('.mjs') ? dir : path.join(dir, 'dist', 'cli.js');
  const child = spawn(process.execPath, [entry], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PYTHONPATH: work,
      ASYA_HANDLER: 'ab_echo.echo',
      ASYA_SOCKET_DIR: sockDir,
      ASYA_LOG_LEVEL: opt.level,
      ASYA_JSON_CODEC: opt.codec,
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  let gone = false;
  const exited = new Promise((r) => child.on('exit', r)).then(() => (gone = true));
  while (!fs.existsSync(path.join(sockDir, 'runtime-ready'))) {
    if (gone) throw new Error(`${entry} exited before it was ready (run it by hand to see why)`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const sock = path.join(sockDir, 'asya-runtime.sock');
  if (Number(opt.warmup) > 0) execFileSync(client, [sock, opt.warmup, path.join(work, 'frame')]);
  const before = treeCpu(child.pid);
  const out = execFileSync(client, [sock, opt.messages, path.join(work, 'frame')], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const after = treeCpu(child.pid);
  const n = Number(opt.messages);
  child.kill('SIGTERM');
  await exited;
  const lat = out
    .split('\n')
    .filter((l) => /^\d/.test(l))
    .map(Number)
    .sort((a, b) => a - b);
  return {
    p50: lat[Math.floor(lat.length * 0.5)],
    p99: lat[Math.floor(lat.length * 0.99)],
    cpu: (after.ns - before.ns) / n / 1000,
    main: (after.mainNs - before.mainNs) / n / 1000,
  };
}

const results = Object.fromEntries(builds.map(([name]) => [name, []]));
for (let round = 0; round < Number(opt.rounds); round++) {
  const order = builds.map((_, i) => builds[(i + round) % builds.length]);
  for (const [name, dir] of order) results[name].push(await measure(dir));
}
const med = (name, key) => median(results[name].map((r) => r[key]));
const ours = { p50: med('this', 'p50'), p99: med('this', 'p99'), cpu: med('this', 'cpu'), main: med('this', 'main') };
console.log(
  `${opt.size} B, ${opt.messages} messages x ${opt.rounds} rounds, ASYA_LOG_LEVEL=${opt.level} (µs, median of rounds)`,
);
for (const [name] of builds) {
  const [p50, p99, cpu, main] = ['p50', 'p99', 'cpu', 'main'].map((key) => med(name, key));
  console.log(
    `  ${name.padEnd(24)} p50 ${p50.toFixed(0)}  p99 ${p99.toFixed(0)}  CPU/msg tree ${cpu.toFixed(0)} main ${main.toFixed(0)}` +
      `   this/it: p50 ${(ours.p50 / p50).toFixed(3)}  p99 ${(ours.p99 / p99).toFixed(3)}` +
      `  tree ${(ours.cpu / cpu).toFixed(3)}  main ${(ours.main / main).toFixed(3)}`,
  );
}
