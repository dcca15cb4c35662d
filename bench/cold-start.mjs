#!/usr/bin/env node
// Cold start: from exec to the ready file, with a trivial handler, for the single executable (when
// `npm run package` has built it), `node dist/cli.js`, and the upstream runtime, started the way
// bench/bench.mjs starts it (same environment, stderr to a file). Rounds alternate between them so
// noise on a shared machine hits all alike; each figure is a median.
//
//   node bench/cold-start.mjs                # 7 rounds
//   node bench/cold-start.mjs --quick        # 3 rounds, a smoke check
//   node bench/cold-start.mjs --rounds 15 --phases --baseline ../other-checkout
//
// --baseline DIR (repeatable) adds that checkout's executable and dist/cli.js (built there) to the same
// rounds, named after the directory: an A/B of builds in one time window. --phases prints the median of each startup phase of ours, from the
// `startup_ms` field of the runtime's "started in" log line (milliseconds since exec).
//
// The ready file's creation is seen through inotify (fs.watch on its directory), not by polling, so
// the clock stops within a wake-up of the runtime writing it.
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
    peer: { type: 'string', default: path.resolve(root, '..', 'shared', 'peer', 'asya_runtime.py') },
    python: { type: 'string', default: 'python3' },
    exe: { type: 'string', default: path.join(root, 'dist', 'asya-runtime') },
    'node-cli': { type: 'string', default: path.join(root, 'dist', 'cli.js') },
    baseline: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    phases: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const rounds = Number(opt.rounds ?? (opt.quick ? 3 : 7));
const python = execFileSync(opt.python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

const handlerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-cold-'));
fs.writeFileSync(path.join(handlerDir, 'cold_echo.py'), 'def process(payload):\n    return payload\n');
const base = {
  ASYA_HANDLER: 'cold_echo.process',
  PYTHONPATH: handlerDir,
  ASYA_LOG_LEVEL: 'INFO',
  PATH: process.env.PATH,
  HOME: process.env.HOME,
};

const runtimes = [];
function ours(label, exe, cli) {
  const env = { ...base, ASYA_PYTHONEXECUTABLE: python };
  if (fs.existsSync(exe)) runtimes.push({ name: `${label}executable`, cmd: exe, args: [], env, ours: true });
  if (fs.existsSync(cli))
    runtimes.push({ name: `${label}node dist/cli.js`, cmd: process.execPath, args: [cli], env, ours: true });
}
ours('', opt.exe, opt['node-cli']);
for (const dir of opt.baseline.map((d) => path.resolve(d))) {
  ours(`${path.basename(dir)}: `, path.join(dir, 'dist', 'asya-runtime'), path.join(dir, 'dist', 'cli.js'));
}
const hasPeer = fs.existsSync(opt.peer);
if (hasPeer) runtimes.push({ name: 'peer', cmd: python, args: [opt.peer], env: base });

/** Milliseconds from spawn to the ready file; then SIGTERM and wait for the exit. */
async function coldStart(rt) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-cold-run-'));
  const ready = path.join(dir, 'runtime-ready');
  const logFile = path.join(dir, 'log');
  const log = fs.openSync(logFile, 'w');
  let seen;
  const created = new Promise((resolve) => (seen = resolve));
  const watcher = fs.watch(dir, (_event, name) => {
    if (name === 'runtime-ready' && fs.existsSync(ready)) seen(process.hrtime.bigint());
  });
  const t0 = process.hrtime.bigint();
  const child = spawn(rt.cmd, rt.args, { env: { ...rt.env, ASYA_SOCKET_DIR: dir }, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 30_000).unref());
  const t1 = await Promise.race([created, exited.then(() => null), timeout]);
  // CPU of the process and its Python processes when the ready file appears: less sensitive than wall time
  // to other load on a shared machine.
  const used = t1 === null ? null : treeCpu(child.pid);
  const cpu = used === null ? null : used.ns / 1e6;
  watcher.close();
  child.kill('SIGTERM');
  await exited;
  const text = fs.readFileSync(logFile, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  if (t1 === null) throw new Error(`${rt.name} did not become ready:\n${text.slice(-2000)}`);
  return { ms: Number(t1 - t0) / 1e6, cpu, phases: opt.phases && rt.ours ? phasesFrom(text) : null };
}

/** The `startup_ms` field of the runtime's "started in" line: each phase's end, ms since the process started. */
function phasesFrom(text) {
  for (const line of text.split('\n')) {
    if (!line.includes('"startup_ms"')) continue;
    try {
      return JSON.parse(line).startup_ms;
    } catch {}
  }
  return null;
}

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg()[0].toFixed(2)}, Node ${process.version} (dist/cli.js), Python ${execFileSync(python, ['-c', 'import platform; print(platform.python_version())'], { encoding: 'utf8' }).trim()}`;
console.log(`machine: ${machine}`);
console.log(`peer: ${hasPeer ? opt.peer : 'not found (pass --peer PATH)'}; rounds: ${rounds}, interleaved\n`);

const samples = new Map(runtimes.map((rt) => [rt.name, []]));
const cpuSamples = new Map(runtimes.map((rt) => [rt.name, []]));
const traces = new Map(runtimes.map((rt) => [rt.name, []]));
for (const rt of runtimes) await coldStart(rt); // warm the page cache: every round then starts alike
for (let round = 0; round < rounds; round++) {
  for (const rt of runtimes) {
    const r = await coldStart(rt);
    samples.get(rt.name).push(r.ms);
    if (r.cpu !== null) cpuSamples.get(rt.name).push(r.cpu);
    if (r.phases) traces.get(rt.name).push(r.phases);
  }
}

const peerMedian = hasPeer ? median(samples.get('peer')) : null;
const rows = runtimes.map((rt) => {
  const xs = samples.get(rt.name);
  const m = median(xs);
  return {
    runtime: rt.name,
    median_ms: +m.toFixed(1),
    cpu_ms: cpuSamples.get(rt.name).length ? +median(cpuSamples.get(rt.name)).toFixed(1) : null,
    min_ms: +Math.min(...xs).toFixed(1),
    max_ms: +Math.max(...xs).toFixed(1),
    ratio_to_peer: peerMedian ? +(m / peerMedian).toFixed(2) : null,
  };
});
if (opt.json) console.log(JSON.stringify({ machine, rounds, rows }, null, 2));
console.log('| runtime | exec → ready median ms | min / max ms | ratio to peer | CPU to ready, median ms |');
console.log('|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.runtime} | ${r.median_ms} | ${r.min_ms} / ${r.max_ms} | ${r.ratio_to_peer === null ? '—' : `${r.ratio_to_peer.toFixed(2)}x`} | ${r.cpu_ms ?? '—'} |`,
  );

for (const [name, list] of traces) {
  if (list.length === 0) continue;
  console.log(`\n${name}: end of each phase, median ms since exec (${list.length} runs)`);
  const keys = [...new Set(list.flatMap((p) => Object.keys(p)))];
  const at = (key) => median(list.map((p) => p[key]).filter((v) => typeof v === 'number'));
  for (const key of keys.sort((a, b) => at(a) - at(b))) {
    const values = list.map((p) => p[key]).filter((v) => typeof v === 'number');
    if (values.length) console.log(`  ${key.padEnd(22)} ${median(values).toFixed(1)}`);
  }
}
fs.rmSync(handlerDir, { recursive: true, force: true });
