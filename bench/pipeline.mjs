#!/usr/bin/env node
// Throughput through the real pipeline: RabbitMQ -> upstream's Go sidecar -> the runtime -> the sidecar ->
// RabbitMQ, with ../shared/pipeline/bench.py (one broker, a fresh runtime and sidecar per cell, rounds
// interleaved; see that folder's README for what every number means). Three runtimes side by side on the
// echo handler: the design floor (../shared/bench/design-floor.mjs), ours (`node dist/cli.js`, stdlib json
// like the other two) and the upstream runtime (../shared/peer/asya_runtime.py), at 100 B, 10 KB and 1 MB,
// ASYA_LOG_LEVEL=INFO and WARNING; then ours against the targets:
//   100 B and 10 KB: at least 0.98x the design floor's throughput;
//   1 MB: at least 1.3x the upstream runtime's at INFO, 1.1x at WARNING.
//
//   node bench/pipeline.mjs            # after npm run build: 3 rounds (~15 min); writes docs/bench/pipeline.json
//   node bench/pipeline.mjs --quick    # 1 short round (~3 min), for a smoke check; writes /tmp/asya-bench
//   node bench/pipeline.mjs --levels WARNING --sizes 1MB --rounds 5 --orjson   # ours+orjson as a fourth
//
// Skipped, with one line, when the pipeline folder (--pipeline, $ASYA_PIPELINE_DIR, else ../shared/pipeline)
// is absent; its prepare.sh runs first (quiet when nothing is missing).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '..', 'shared');
const { values: opt } = parseArgs({
  options: {
    pipeline: { type: 'string', default: process.env.ASYA_PIPELINE_DIR ?? path.join(shared, 'pipeline') },
    peer: { type: 'string', default: path.join(shared, 'peer', 'asya_runtime.py') },
    floor: { type: 'string', default: path.join(shared, 'bench', 'design-floor.mjs') },
    python: { type: 'string', default: 'python3' },
    levels: { type: 'string', default: 'INFO,WARNING' },
    sizes: { type: 'string', default: '100,10KB,1MB' },
    rounds: { type: 'string' },
    orjson: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const benchPy = path.join(opt.pipeline, 'bench.py');
if (!fs.existsSync(benchPy)) {
  console.log(`bench/pipeline.mjs: skipped, no ${benchPy} (../shared/pipeline, or --pipeline / ASYA_PIPELINE_DIR)`);
  process.exit(0);
}
// Only a full default run replaces the published figures in docs/bench; a partial one goes to /tmp.
const partial =
  opt.quick || process.argv.slice(2).some((arg) => /^--(levels|sizes|rounds|orjson|python|peer|floor)\b/.test(arg));
const outDir = opt.out ?? (partial ? path.join(os.tmpdir(), 'asya-bench') : path.join(root, 'docs', 'bench'));
fs.mkdirSync(outDir, { recursive: true });
const rawDir = path.join(os.tmpdir(), 'asya-bench');
fs.mkdirSync(rawDir, { recursive: true });

const prepared = spawnSync('bash', [path.join(opt.pipeline, 'prepare.sh')], { stdio: 'inherit' });
if (prepared.status !== 0) {
  console.log(`bench/pipeline.mjs: ${opt.pipeline}/prepare.sh failed (exit ${prepared.status ?? prepared.signal})`);
  process.exit(1);
}

const python = execFileSync(opt.python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
/** A word for bench.py's shlex.split. */
const q = (s) => (/^[\w./=+:@,-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
const cmd = (...words) => words.map(q).join(' ');
const cli = path.join(root, 'dist', 'cli.js');
const runtimes = [];
if (fs.existsSync(opt.floor))
  runtimes.push(['floor', cmd('env', `ASYA_PYTHONEXECUTABLE=${python}`, process.execPath, opt.floor)]);
else console.log(`no design floor at ${opt.floor}: no floor column`);
runtimes.push(['ours', cmd('env', `ASYA_PYTHONEXECUTABLE=${python}`, 'ASYA_JSON_CODEC=json', process.execPath, cli)]);
if (opt.orjson)
  runtimes.push([
    'ours+orjson',
    cmd('env', `ASYA_PYTHONEXECUTABLE=${python}`, 'ASYA_JSON_CODEC=orjson', process.execPath, cli),
  ]);
if (fs.existsSync(opt.peer)) runtimes.push(['peer', cmd(python, opt.peer)]);
else console.log(`no upstream runtime at ${opt.peer}: no peer column`);

const args = [
  benchPy,
  ...runtimes.map(([name, c]) => `--runtime=${name}=${c}`),
  '--sizes',
  opt.sizes,
  '--log-level',
  opt.levels,
  '--out',
  path.join(rawDir, `pipeline-raw-${Date.now()}.jsonl`),
  '--no-management',
  ...(opt.quick
    ? [
        '--rounds',
        opt.rounds ?? '1',
        '--seconds',
        '2',
        '--warmup',
        '1',
        '--latency-seconds',
        '1',
        '--latency-min',
        '10',
      ]
    : ['--rounds', opt.rounds ?? '3']),
];
const command = `${python} ${args.map(q).join(' ')}`;
console.log(`$ ${command}`);
const child = spawn(python, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
const lines = [];
for await (const line of readline.createInterface({ input: child.stdout })) {
  console.log(line);
  if (line.startsWith('{"level"')) lines.push(JSON.parse(line));
}
const status = await new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0))));

// Ours against the floor and the peer: throughput (higher is better), p50 and runtime CPU (lower is better).
const ratio = (a, b) => (a && b ? a / b : undefined);
const x = (r) => (r === undefined ? '–' : `${r.toFixed(2)}x`);
const n = (v) =>
  v === undefined || v === null ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
const summary = lines.map((l) => {
  const { ours, floor, peer } = l.runtimes;
  const through = (r) => (r?.rounds ? r.msgs_per_s : undefined);
  const target =
    l.size_bytes >= 1e6 ? { against: 'peer', min: l.level === 'INFO' ? 1.3 : 1.1 } : { against: 'floor', min: 0.98 };
  const got = ratio(through(ours), through(target.against === 'peer' ? peer : floor));
  return {
    level: l.level,
    size: l.size,
    msgs_per_s: { floor: through(floor), ours: through(ours), peer: through(peer) },
    p50_ms: { floor: floor?.lat_p50_ms, ours: ours?.lat_p50_ms, peer: peer?.lat_p50_ms },
    runtime_cpu_ms_per_msg: {
      floor: floor?.cpu_ms_per_msg?.runtime,
      ours: ours?.cpu_ms_per_msg?.runtime,
      peer: peer?.cpu_ms_per_msg?.runtime,
    },
    ours_to_floor: ratio(through(ours), through(floor)),
    ours_to_peer: ratio(through(ours), through(peer)),
    target: { ...target, ratio: got, met: got === undefined ? undefined : got >= target.min },
  };
});
console.log('\n== ours through the real pipeline (throughput msg/s; ratios: ours/other, above 1 is faster)\n');
console.log(
  '| level | size | floor msg/s | ours msg/s | peer msg/s | ours/floor | ours/peer | p50 ms floor / ours / peer | runtime CPU ms/msg floor / ours / peer | target | met |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const s of summary) {
  const t = s.target;
  console.log(
    `| ${s.level} | ${s.size} | ${n(s.msgs_per_s.floor)} | ${n(s.msgs_per_s.ours)} | ${n(s.msgs_per_s.peer)} | ${x(s.ours_to_floor)} | ${x(s.ours_to_peer)} | ${n(s.p50_ms.floor)} / ${n(s.p50_ms.ours)} / ${n(s.p50_ms.peer)} | ${n(s.runtime_cpu_ms_per_msg.floor)} / ${n(s.runtime_cpu_ms_per_msg.ours)} / ${n(s.runtime_cpu_ms_per_msg.peer)} | ≥ ${t.min}x the ${t.against} | ${t.met === undefined ? '–' : t.met ? 'yes' : 'NO'} |`,
  );
}
const file = path.join(outDir, 'pipeline.json');
fs.writeFileSync(
  file,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      command,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
      quick: opt.quick,
      summary,
      lines,
    },
    null,
    1,
  )}\n`,
);
console.log(`\nwritten: ${file.startsWith(root) ? path.relative(root, file) : file}`);
process.exit(status);
