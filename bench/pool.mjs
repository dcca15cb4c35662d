#!/usr/bin/env node
// The worker pool (ASYA_WORKERS), side by side with the upstream Python runtime (the peer):
//
//   node bench/pool.mjs            # after npm run build
//   node bench/pool.mjs --quick    # fewer messages and rounds, for a smoke check
//
// 1. Throughput with cores: 4 concurrent sidecar-like clients (loadgen.c: one connection per message),
//    a handler that burns 5 ms of pure-Python CPU; the peer, ASYA_WORKERS=1 and ASYA_WORKERS=2.
//    Rounds alternate the runtimes (their order rotated each round) so a shared machine's noise hits
//    all alike; the figure is the median of the rounds.
// 2. Availability: a handler whose __init__ takes 3 s; one Python process is SIGKILLed (after a
//    message, idle) and the next message is sent as soon as the runtime has logged the death; the
//    delay from the kill to its answer, ASYA_WORKERS=1 vs 2. The peer is not in it: its handler runs
//    in its own process, so a kill there is the runtime's end, not a restart.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmt, median } from './stats.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    peer: { type: 'string', default: path.resolve(root, '..', 'shared', 'peer', 'asya_runtime.py') },
    loadgen: { type: 'string', default: path.resolve(root, '..', 'shared', 'bench', 'loadgen.c') },
    python: { type: 'string', default: 'python3' },
    rounds: { type: 'string' },
    /** A checkout of another build (its dist/cli.js), run with one worker in the same rounds: an A/B. */
    baseline: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const rounds = Number(opt.rounds ?? (opt.quick ? 2 : 5));
const messages = opt.quick ? 200 : 800;
const kills = opt.quick ? 2 : 4;
const CONCURRENCY = 4;
const WARM_MESSAGES = 3000;
const INIT_SECONDS = 3;
const python = execFileSync(opt.python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
const hasPeer = fs.existsSync(opt.peer);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-pool-bench-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
const loadgen = path.join(work, 'loadgen');
execFileSync('gcc', ['-O2', '-pthread', '-o', loadgen, opt.loadgen]);
fs.writeFileSync(
  path.join(work, 'pool_bench.py'),
  `import os
import time


def burn(payload):
    """5 ms of pure-Python CPU (process time: the same work however busy the machine is)."""
    end = time.process_time() + 0.005
    n = 0
    while time.process_time() < end:
        for _ in range(200):
            n += 1
    return {"n": n}


class SlowInit:
    def __init__(self):
        time.sleep(${INIT_SECONDS})

    def process(self, payload):
        return {"pid": os.getpid()}
`,
);

function runtime(name, handler, extra = {}, cli = path.join(root, 'dist', 'cli.js')) {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PYTHONPATH: work,
    ASYA_HANDLER: handler,
    ASYA_LOG_LEVEL: 'INFO',
    ...extra,
  };
  return name === 'peer'
    ? { name, cmd: python, args: [opt.peer], env }
    : {
        name,
        cmd: process.execPath,
        args: [cli],
        env: { ...env, ASYA_PYTHONEXECUTABLE: python },
      };
}

async function start(rt, loadedLines = 0) {
  const dir = fs.mkdtempSync(path.join(work, `${rt.name}-`));
  const logFile = path.join(dir, 'log');
  const log = fs.openSync(logFile, 'w');
  const child = spawn(rt.cmd, rt.args, { env: { ...rt.env, ASYA_SOCKET_DIR: dir }, stdio: ['ignore', log, log] });
  const started = { ...rt, child, dir, logFile, socket: path.join(dir, 'asya-runtime.sock') };
  await until(`${rt.name} ready`, () => {
    if (child.exitCode !== null) throw new Error(`${rt.name} exited: ${logText(started).slice(-2000)}`);
    return fs.existsSync(path.join(dir, 'runtime-ready')) && loaded(started).length >= loadedLines;
  });
  return started;
}

async function stop(rt) {
  rt.child.kill('SIGTERM');
  await new Promise((r) => (rt.child.exitCode !== null ? r() : rt.child.on('exit', r)));
  fs.rmSync(rt.dir, { recursive: true, force: true });
}

const logText = (rt) => fs.readFileSync(rt.logFile, 'utf8');
const logLines = (rt) =>
  logText(rt)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
const loaded = (rt) => logLines(rt).filter((l) => l.msg === 'handler loaded');

async function until(what, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function send(socketPath) {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ id: 'pool', route: { actors: ['a', 'b'], current: 0 }, payload: {} }));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    const s = net.connect(socketPath);
    const chunks = [];
    s.on('connect', () => s.end(Buffer.concat([head, body])));
    s.on('data', (c) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const answer = Buffer.concat(chunks).subarray(4).toString();
      if (!answer.startsWith('[{"route"')) return reject(new Error(`not an answer: ${answer.slice(0, 300)}`));
      resolve(JSON.parse(answer));
    });
  });
}

/** utime + stime in ms of `root`'s own process and of its descendants (the Python processes), as [own, descendants]. */
function cpuMs(root) {
  const procs = fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .flatMap((e) => {
      try {
        const f = fs.readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1].split(' ');
        return [{ pid: Number(e), ppid: Number(f[1]), ms: ((Number(f[11]) + Number(f[12])) * 1000) / 100 }];
      } catch {
        return [];
      }
    });
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs)
      if (tree.has(p.ppid) && !tree.has(p.pid)) {
        tree.add(p.pid);
        grew = true;
      }
  }
  const own = procs.find((p) => p.pid === root)?.ms ?? 0;
  const below = procs.filter((p) => p.pid !== root && tree.has(p.pid)).reduce((sum, p) => sum + p.ms, 0);
  return [own, below];
}

console.log(
  `machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, load average ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(
      ' ',
    )}, Node ${process.version}, Python ${execFileSync(python, ['-c', 'import platform; print(platform.python_version())'], { encoding: 'utf8' }).trim()}`,
);
console.log(`peer: ${hasPeer ? opt.peer : 'not found (pass --peer PATH)'}\n`);

// ---------------------------------------------------------------- throughput

const contenders = [
  ...(hasPeer ? [runtime('peer', 'pool_bench.burn')] : []),
  ...(opt.baseline ? [runtime('baseline', 'pool_bench.burn', {}, path.resolve(opt.baseline, 'dist', 'cli.js'))] : []),
  runtime('ASYA_WORKERS=1', 'pool_bench.burn', { ASYA_WORKERS: '1' }),
  runtime('ASYA_WORKERS=2', 'pool_bench.burn', { ASYA_WORKERS: '2' }),
];
console.log(
  `throughput: ${CONCURRENCY} concurrent clients (loadgen.c), a 5 ms pure-Python CPU handler, ${messages} messages a round, ${rounds} rounds`,
);
const running = [];
for (const rt of contenders)
  running.push(await start(rt, rt.name === 'ASYA_WORKERS=2' ? 2 : rt.name === 'peer' ? 0 : 1));
// Steady state, as under a sidecar's stream: the supervisor's JIT compiles its per-message path over the
// first few thousand messages of this scenario (each one wakes a cold process, so V8's tiering sees the
// code run ~300 times a second, not thousands). Measured without this, the first 800 messages cost the
// supervisor ~1 ms of CPU each and the fourth 800 ~0.4 ms (docs/performance.md).
for (const rt of running)
  execFileSync(loadgen, [rt.socket, String(opt.quick ? 200 : WARM_MESSAGES), '100', String(CONCURRENCY)]);
const rps = new Map(running.map((rt) => [rt.name, []]));
const cpu = new Map(running.map((rt) => [rt.name, { own: [], python: [] }]));
for (let round = 0; round < rounds; round++) {
  const order = running.map((_, i) => running[(i + round) % running.length]);
  for (const rt of order) {
    execFileSync(loadgen, [rt.socket, String(CONCURRENCY * 4), '100', String(CONCURRENCY)]); // warm
    const [own0, below0] = cpuMs(rt.child.pid);
    const out = JSON.parse(
      execFileSync(loadgen, [rt.socket, String(messages), '100', String(CONCURRENCY)], { encoding: 'utf8' }),
    );
    const [own1, below1] = cpuMs(rt.child.pid);
    if (out.errors) throw new Error(`${rt.name}: ${out.errors} errors`);
    rps.get(rt.name).push(out.rps);
    cpu.get(rt.name).own.push((own1 - own0) / messages);
    cpu.get(rt.name).python.push((below1 - below0) / messages);
  }
}
for (const rt of running) await stop(rt);
// What the same CPU per message allows on idle cores: the peer is one process (one core); ours is one
// Node process (one core) and N Python processes (a core each), all within the machine's cores.
const cores = os.cpus().length;
const bound = (name) => {
  const { own, python } = cpu.get(name);
  if (name === 'peer') return 1000 / median(own);
  const workers = name === 'baseline' ? 1 : Number(name.split('=')[1]);
  const node = median(own);
  const py = median(python);
  return Math.min((1000 * workers) / py, 1000 / node, (1000 * cores) / (node + py));
};
const peerRps = hasPeer ? median(rps.get('peer')) : null;
const peerBound = hasPeer ? bound('peer') : null;
console.log(
  '| runtime | msg/s (median) | rounds | vs peer | CPU ms/msg: supervisor + Python | bound on idle cores | vs peer |',
);
console.log('|---|---|---|---|---|---|---|');
for (const [name, xs] of rps) {
  const vs = peerRps ? `${(median(xs) / peerRps).toFixed(2)}x` : '';
  const { own, python } = cpu.get(name);
  const split =
    name === 'peer' ? `${fmt(median(own), 2)} (one process)` : `${fmt(median(own), 2)} + ${fmt(median(python), 2)}`;
  const b = bound(name);
  console.log(
    `| ${name} | ${fmt(median(xs))} | ${xs.map((x) => fmt(x)).join(', ')} | ${vs} | ${split} | ${fmt(b)} | ${peerBound ? `${(b / peerBound).toFixed(2)}x` : ''} |`,
  );
}

// ---------------------------------------------------------------- availability

console.log(
  `\navailability: __init__ takes ${INIT_SECONDS} s; one Python process SIGKILLed, the next message sent once the runtime logged the death (${kills} kills)`,
);
console.log('| workers | kill to answer (median) | each, ms |');
console.log('|---|---|---|');
for (const workers of [1, 2]) {
  const rt = await start(
    runtime(`ASYA_WORKERS=${workers}`, 'pool_bench.SlowInit.process', { ASYA_WORKERS: String(workers) }),
    workers,
  );
  const delays = [];
  for (let k = 0; k < kills; k++) {
    // Every worker loaded (the earlier kill's restart included), then a message, then the kill.
    await until('all workers loaded', () => loaded(rt).length >= workers + k);
    await new Promise((r) => setTimeout(r, 200));
    await send(rt.socket);
    const deaths = logLines(rt).filter((l) => l.msg.startsWith('Python process died')).length;
    const live = new Map(loaded(rt).map((l) => [l.worker ?? 1, l.python_pid]));
    const victim = live.get(1);
    const killed = process.hrtime.bigint();
    process.kill(victim, 'SIGKILL');
    await until(
      'the death logged',
      () => logLines(rt).filter((l) => l.msg.startsWith('Python process died')).length > deaths,
    );
    const answer = await send(rt.socket);
    delays.push(Number(process.hrtime.bigint() - killed) / 1e6);
    if (answer[0].payload.pid === victim) throw new Error('answered by the killed process');
  }
  await stop(rt);
  console.log(`| ${workers} | ${fmt(median(delays))} ms | ${delays.map((d) => fmt(d)).join(', ')} |`);
}
