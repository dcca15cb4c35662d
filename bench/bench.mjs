#!/usr/bin/env node
// Side-by-side benchmark: this runtime, the design floor and the upstream Python runtime, same handler,
// same load, one run.
//
//   npm run bench                       # full run, writes docs/bench/results.json, tables.md and latency.svg
//   npm run bench -- --quick            # fewer requests, for a smoke check (partial runs write to /tmp/asya-bench)
//   npm run bench -- --peer /path/asya_runtime.py --concurrency 4 --levels WARNING
//   npm run bench -- --client node      # the Node load generator instead of bench/client.c
//
// The load generator behaves like the sidecar: one connection per message, 4-byte big-endian length
// prefix, waits for the answer. It is bench/client.c, compiled with the machine's C compiler at the start
// of the run (the Node client below when there is none, or with --client node): a Node client competes
// for the CPU with the runtime it measures (~0.1 ms of CPU per small message on a 2-core machine), where
// the real sidecar (Go) spends microseconds. Rounds are interleaved (runtime A, B, C, then again) so
// machine noise hits all of them alike.
//
// The design floor (../shared/bench/design-floor.mjs, when present) is the least a runtime of this design
// can do per message: Node forwards each frame to one Python process over a pipe, with no validation,
// logs, supervision or time limits. The in-process figure is Python's own decode + encode of the same
// envelope, with no socket and no process hop.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmt, percentile } from './stats.mjs';
import { human, tables } from './tables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    peer: { type: 'string', default: path.resolve(root, '..', 'shared', 'peer', 'asya_runtime.py') },
    floor: { type: 'string', default: path.resolve(root, '..', 'shared', 'bench', 'design-floor.mjs') },
    client: { type: 'string', default: 'c' },
    python: { type: 'string', default: 'python3' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1' },
    levels: { type: 'string', default: 'INFO,WARNING' },
    sizes: { type: 'string', default: '100,10000,1000000,10000000' },
    out: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
// Only a full default run replaces the published figures in docs/bench; a partial one goes to /tmp.
const partial =
  opt.quick ||
  process.argv.slice(2).some((arg) => /^--(rounds|concurrency|levels|sizes|python|peer|floor|client)\b/.test(arg));
const outDir = opt.out ?? (partial ? path.join(os.tmpdir(), 'asya-bench') : path.join(root, 'docs', 'bench'));
const rounds = Number(opt.rounds);
const concurrency = Number(opt.concurrency);
const sizes = opt.sizes.split(',').map(Number);
const python = execFileSync(opt.python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
const hasOrjson = spawnOk(python, ['-c', 'import orjson']);
const hasPeer = fs.existsSync(opt.peer);
const hasFloor = fs.existsSync(opt.floor);
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-bench-'));
const cClient = opt.client === 'c' ? compileClient() : null;

/** bench/client.c built for this run; null (the Node client) when there is no C compiler. */
function compileClient() {
  const out = path.join(workDir, 'bench-client');
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    try {
      execFileSync(cc, ['-O2', '-pthread', '-o', out, path.join(root, 'bench', 'client.c')], { stdio: 'ignore' });
      return out;
    } catch {
      // try the next compiler
    }
  }
  console.log('no C compiler found: measuring with the Node client, which inflates small-message latencies');
  return null;
}

function spawnOk(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Requests per round, per size: enough for a stable p50 without running for an hour. */
function requestsFor(size) {
  // Small sizes get more: their p99 is the tail the runtime is held to.
  const n = size <= 1000 ? 1000 : size <= 100_000 ? 500 : size <= 2_000_000 ? 16 : 4;
  return opt.quick ? Math.max(2, Math.ceil(n / 8)) : n;
}

// ---------------------------------------------------------------- payloads

function payloadFor(shape, size) {
  if (shape === 'string') return { text: 'a'.repeat(Math.max(1, size - 12)) };
  // an embedding-like vector: floats with ~18 characters each
  const n = Math.max(1, Math.round((size - 16) / 20));
  let x = 0.5;
  const v = new Array(n);
  for (let i = 0; i < n; i++) {
    x = (x * 9301 + 0.49297) % 1;
    v[i] = x - 0.5;
  }
  return { embedding: v };
}

function envelopeBytes(payload) {
  return Buffer.from(
    JSON.stringify({
      id: 'bench',
      route: { actors: ['echo', 'next'], current: 0 },
      headers: { trace_id: 't' },
      payload,
    }),
  );
}

/** The request as the sidecar sends it: the length prefix, then the envelope. */
function frameFor(shape, size) {
  const body = envelopeBytes(payloadFor(shape, size));
  const frame = Buffer.alloc(4 + body.length);
  frame.writeUInt32BE(body.length);
  body.copy(frame, 4);
  return frame;
}

// ---------------------------------------------------------------- runtimes

const handlerDir = workDir;
fs.writeFileSync(path.join(handlerDir, 'bench_echo.py'), 'def process(payload):\n    return payload\n');

function runtimes(level) {
  const base = {
    ASYA_HANDLER: 'bench_echo.process',
    PYTHONPATH: handlerDir,
    ASYA_LOG_LEVEL: level,
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...(process.env.ASYA_LOG_MESSAGES ? { ASYA_LOG_MESSAGES: process.env.ASYA_LOG_MESSAGES } : {}),
    ...(process.env.ASYA_METRICS_ADDR ? { ASYA_METRICS_ADDR: process.env.ASYA_METRICS_ADDR } : {}),
  };
  const list = [
    {
      name: 'ours',
      cmd: process.execPath,
      args: [path.join(root, 'dist', 'cli.js')],
      env: { ...base, ASYA_PYTHONEXECUTABLE: python, ASYA_JSON_CODEC: 'json' },
    },
  ];
  if (hasOrjson) {
    list.push({
      name: 'ours+orjson',
      cmd: process.execPath,
      args: [path.join(root, 'dist', 'cli.js')],
      env: { ...base, ASYA_PYTHONEXECUTABLE: python, ASYA_JSON_CODEC: 'orjson' },
    });
  }
  if (hasFloor)
    list.push({
      name: 'floor',
      cmd: process.execPath,
      args: [opt.floor],
      env: { ...base, ASYA_PYTHONEXECUTABLE: python },
    });
  if (hasPeer) list.push({ name: 'peer', cmd: python, args: [opt.peer], env: base });
  return list;
}

async function start(rt) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `asya-bench-${rt.name}-`));
  // stderr to a file, as a container runtime would collect it; it is the peer's cost at INFO
  const log = fs.openSync(path.join(dir, 'log'), 'w');
  const child = spawn(rt.cmd, rt.args, { env: { ...rt.env, ASYA_SOCKET_DIR: dir }, stdio: ['ignore', log, log] });
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(path.join(dir, 'runtime-ready'))) {
    if (child.exitCode !== null)
      throw new Error(`${rt.name} exited: ${fs.readFileSync(path.join(dir, 'log'), 'utf8').slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`${rt.name} not ready`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { ...rt, child, dir, socket: path.join(dir, 'asya-runtime.sock'), pid: child.pid };
}

async function stop(rt) {
  rt.child.kill('SIGTERM');
  await new Promise((r) => (rt.child.exitCode !== null ? r() : rt.child.on('exit', r)));
  fs.rmSync(rt.dir, { recursive: true, force: true });
}

function cpuSeconds(pid) {
  // utime + stime of the process and its reaped children, in seconds
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

// ---------------------------------------------------------------- load

function once(socketPath, frame) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect(socketPath);
    const chunks = [];
    let got = 0;
    let want = -1;
    s.on('connect', () => s.end(frame));
    s.on('data', (c) => {
      chunks.push(c);
      got += c.length;
      if (want < 0 && got >= 4) want = Buffer.concat(chunks).readUInt32BE(0) + 4;
    });
    s.on('error', reject);
    s.on('close', () => {
      if (want < 0 || got !== want) return reject(new Error(`short answer: ${got} of ${want}`));
      const first = chunks[0].subarray(4, 16).toString();
      if (first.includes('"error"')) return reject(new Error(Buffer.concat(chunks).subarray(4, 400).toString()));
      resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

async function load(socketPath, frame, n) {
  if (cClient) return loadC(socketPath, frame, n);
  const latencies = [];
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        next++;
        latencies.push(await once(socketPath, frame));
      }
    }),
  );
  return { latencies, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** The same load from bench/client.c, in its own process: latencies in ms, the run's wall time in seconds. */
function loadC(socketPath, frame, n) {
  const file = path.join(workDir, 'frame');
  fs.writeFileSync(file, frame);
  const out = execFileSync(cClient, [socketPath, String(n), file, String(concurrency)], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const lines = out.trim().split('\n');
  const elapsed = Number(lines.pop().split(' ')[1]);
  return { latencies: lines.map((l) => Number(l) / 1000), seconds: elapsed / 1e6 };
}

// ---------------------------------------------------------------- in-process

/** Python's own decode + encode of the envelope, no socket: what neither runtime can go under. */
function inProcess(shape, size, codec) {
  const script = `
import json, sys, time
frame = sys.stdin.buffer.read()
codec = sys.argv[1]
if codec == "orjson":
    import orjson
    loads, dumps = orjson.loads, orjson.dumps
else:
    loads, dumps = json.loads, lambda o: json.dumps(o).encode()
n = int(sys.argv[2])
times = []
for _ in range(n):
    t = time.perf_counter()
    e = loads(frame)
    out = [{"payload": e["payload"], "route": dict(e["route"], current=1), "headers": e["headers"]}]
    dumps(out)
    times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2] * 1000)
`;
  const frame = envelopeBytes(payloadFor(shape, size));
  return Number(
    execFileSync(python, ['-c', script, codec, String(Math.max(5, requestsFor(size)))], {
      input: frame,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    }).trim(),
  );
}

// ---------------------------------------------------------------- run

const shapes = ['string', 'floats'];
const results = [];
const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Python ${execFileSync(python, ['-c', 'import platform; print(platform.python_version())'], { encoding: 'utf8' }).trim()}`;
console.log(`machine: ${machine}`);
console.log(
  `peer: ${hasPeer ? opt.peer : 'not found (pass --peer PATH)'}; design floor: ${hasFloor ? opt.floor : 'not found (pass --floor PATH): no floor column'}; ` +
    `orjson in ${python}: ${hasOrjson ? 'yes' : 'no'}; client: ${cClient ? 'C (bench/client.c)' : 'Node'}; concurrency ${concurrency}; rounds ${rounds}\n`,
);

for (const level of opt.levels.split(',')) {
  const started = [];
  for (const rt of runtimes(level)) started.push(await start(rt));
  const cells = new Map();
  // Steady state, as under a sidecar's stream: the supervisor's JIT compiles its per-message path over
  // the first few hundred messages (the first round of small messages read 2-3x slower without this).
  for (const rt of started) {
    for (const size of sizes.filter((n) => n <= 100_000)) {
      for (const shape of shapes) await load(rt.socket, frameFor(shape, size), opt.quick ? 50 : 1000);
    }
  }
  for (let round = 0; round < rounds; round++) {
    for (const size of sizes) {
      for (const shape of shapes) {
        const frame = frameFor(shape, size);
        for (const rt of started) {
          const key = `${rt.name}|${size}|${shape}`;
          const cell = cells.get(key) ?? { latencies: [], seconds: 0, n: 0, cpu: 0 };
          await load(rt.socket, frame, 3); // warm
          const cpu0 = cpuSeconds(rt.pid);
          const r = await load(rt.socket, frame, requestsFor(size));
          cell.cpu += cpuSeconds(rt.pid) - cpu0;
          cell.latencies.push(...r.latencies);
          cell.seconds += r.seconds;
          cell.n += r.latencies.length;
          cells.set(key, cell);
        }
      }
    }
  }
  for (const rt of started) await stop(rt);
  for (const size of sizes) {
    for (const shape of shapes) {
      const frameBytes = envelopeBytes(payloadFor(shape, size)).length;
      const row = { level, size, shape, frameBytes, inProcess: { json: inProcess(shape, size, 'json') }, runtimes: {} };
      if (hasOrjson) row.inProcess.orjson = inProcess(shape, size, 'orjson');
      for (const rt of started) {
        const c = cells.get(`${rt.name}|${size}|${shape}`);
        const sorted = c.latencies.sort((a, b) => a - b);
        row.runtimes[rt.name] = {
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          throughput: c.n / c.seconds,
          n: c.n,
          cpuMsPerMsg: (c.cpu / c.n) * 1000,
        };
      }
      results.push(row);
    }
  }
  printLevel(level);
}

function printLevel(level) {
  console.log(
    `== ASYA_LOG_LEVEL=${level} (latency in ms, throughput in msg/s, ratios ours/peer: p50 lower is better, throughput higher is better)`,
  );
  const header = [
    'size',
    'shape',
    'runtime',
    'p50',
    'p99',
    'msg/s',
    'MB/s',
    'p50 ratio',
    'thr ratio',
    'p50/floor',
    'p99/floor',
    'in-proc',
  ];
  const rows = [header];
  for (const r of results.filter((x) => x.level === level)) {
    const { peer, floor } = r.runtimes;
    for (const [name, m] of Object.entries(r.runtimes)) {
      const mine = name.startsWith('ours');
      rows.push([
        human(r.size),
        r.shape,
        name,
        fmt(m.p50),
        fmt(m.p99),
        fmt(m.throughput, 1),
        fmt((m.throughput * r.frameBytes) / 1e6, 1),
        peer && mine ? `${(m.p50 / peer.p50).toFixed(2)}x` : '',
        peer && mine ? `${(m.throughput / peer.throughput).toFixed(2)}x` : '',
        floor && mine ? `${(m.p50 / floor.p50).toFixed(2)}x` : '',
        floor && mine ? `${(m.p99 / floor.p99).toFixed(2)}x` : '',
        fmt(name === 'ours+orjson' ? r.inProcess.orjson : r.inProcess.json),
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((c, i) => String(c).padStart(widths[i])).join('  '));
  console.log();
}

// ---------------------------------------------------------------- outputs

fs.mkdirSync(outDir, { recursive: true });
const client = cClient ? 'c' : 'node';
const run = { date: new Date().toISOString(), machine, client, concurrency, rounds, results };
fs.writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(run, null, 1));
fs.writeFileSync(path.join(outDir, 'tables.md'), tables(run));
fs.writeFileSync(path.join(outDir, 'latency.svg'), chart());
fs.rmSync(workDir, { recursive: true, force: true });
console.log(`wrote ${path.relative(process.cwd(), path.join(outDir, 'results.json'))}, tables.md and latency.svg`);

/** p50 latency by payload size, log-log, one line per runtime and log level (string payloads solid, floats dashed). */
function chart() {
  const W = 760,
    H = 440,
    L = 70,
    R = 190,
    T = 30,
    B = 50;
  const xs = sizes.map(Math.log10);
  const all = results.flatMap((r) => Object.values(r.runtimes).map((m) => m.p50));
  const y0 = Math.floor(Math.log10(Math.min(...all))),
    y1 = Math.ceil(Math.log10(Math.max(...all)));
  const X = (s) => L + ((Math.log10(s) - xs[0]) / (xs[xs.length - 1] - xs[0] || 1)) * (W - L - R);
  const Y = (v) => H - B - ((Math.log10(v) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const colors = { ours: '#1f77b4', 'ours+orjson': '#2ca02c', floor: '#7f7f7f', peer: '#d62728' };
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`;
  svg += `<text x="${L}" y="18" font-size="14">p50 latency by payload size (log-log; solid: string payload, dashed: float array)</text>\n`;
  for (let e = y0; e <= y1; e++)
    svg += `<line x1="${L}" x2="${W - R}" y1="${Y(10 ** e)}" y2="${Y(10 ** e)}" stroke="#ddd"/><text x="${L - 8}" y="${Y(10 ** e) + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)} ms</text>\n`;
  for (const s of sizes) svg += `<text x="${X(s)}" y="${H - B + 18}" text-anchor="middle">${human(s)}</text>\n`;
  let legend = 0;
  for (const level of opt.levels.split(',')) {
    for (const name of Object.keys(colors)) {
      for (const shape of shapes) {
        const pts = results
          .filter((r) => r.level === level && r.shape === shape && r.runtimes[name])
          .map((r) => [X(r.size), Y(r.runtimes[name].p50)]);
        if (!pts.length) continue;
        const dash = shape === 'floats' ? ' stroke-dasharray="6,4"' : '';
        const width = level === 'INFO' ? 2.5 : 1.2;
        svg += `<polyline fill="none" stroke="${colors[name]}" stroke-width="${width}"${dash} points="${pts.map((p) => p.join(',')).join(' ')}"/>\n`;
        if (shape === 'string') {
          const ly = T + 20 + legend++ * 18;
          svg += `<line x1="${W - R + 15}" x2="${W - R + 45}" y1="${ly}" y2="${ly}" stroke="${colors[name]}" stroke-width="${width}"/><text x="${W - R + 52}" y="${ly + 4}">${name} ${level}</text>\n`;
        }
      }
    }
  }
  return `${svg}</svg>\n`;
}
