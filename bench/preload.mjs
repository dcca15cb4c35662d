#!/usr/bin/env node
// ASYA_PRELOAD (workers forked from a loaded template) beside spawn mode (each worker loads), same run:
//
//   node bench/preload.mjs            # after npm run build; needs numpy (.cache/test-venv has it)
//   node bench/preload.mjs --quick    # fewer messages, for a smoke check
//
// 1. Memory: a class whose __init__ builds a 400 MB numpy model, ASYA_WORKERS=4, every worker having
//    served; the PSS (/proc/PID/smaps_rollup) of all the runtime's Python processes together (template,
//    reapers, porters, workers, the spare), against one spawn-mode worker (its reaper and its shim).
// 2. Replacement: ASYA_WORKERS=1, an __init__ of 3 s. (a) the worker SIGKILLed while idle, the next
//    message sent once the runtime logged the death: kill to answer. (b) a message that swallows the
//    soft time limit (0.5 s) is killed after ASYA_HANDLER_KILL_GRACE (0.2 s); the message queued behind
//    it: from the killed message's answer to its own.
// 3. Recycling: ASYA_WORKER_MAX_MESSAGES=10 against no recycling, 500 sequential messages of a handler
//    that takes 5 ms of CPU; throughput, and how many times __init__ ran.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmt } from './stats.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const venv = path.join(root, '.cache', 'test-venv', 'bin', 'python3');
const { values: opt } = parseArgs({
  options: {
    python: { type: 'string', default: fs.existsSync(venv) ? venv : 'python3' },
    quick: { type: 'boolean', default: false },
  },
});
const MODEL_MB = 400;
const recycleMessages = opt.quick ? 200 : 500;
const cli = path.join(root, 'dist', 'cli.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-preload-bench-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
fs.writeFileSync(
  path.join(work, 'preload_bench.py'),
  `import os
import time


class Model:
    def __init__(self):
        with open(os.environ["BENCH_INITS"], "a") as f:
            f.write("%d\\n" % os.getpid())
        time.sleep(float(os.environ.get("BENCH_INIT_SECONDS", "0")))
        mb = int(os.environ.get("BENCH_MODEL_MB", "0"))
        self.weights = None
        if mb:
            import numpy
            self.weights = numpy.ones(mb * 2 ** 20 // 8)

    def process(self, payload):
        if payload.get("stuck"):
            while True:
                try:
                    time.sleep(30)
                except BaseException:
                    pass
        end = time.process_time() + payload.get("cpu", 0)
        while time.process_time() < end:
            pass
        if self.weights is not None:
            self.weights[:10].sum()
        return {"pid": os.getpid()}
`,
);
try {
  execFileSync(opt.python, ['-c', 'import numpy'], { stdio: 'ignore' });
} catch {
  console.log(`${opt.python} has no numpy: run npm test once (it prepares .cache/test-venv) or pass --python`);
  process.exit(1);
}

let seq = 0;
function exchange(socket, payload) {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ id: `b-${++seq}`, route: { actors: ['a'], current: 0 }, payload }));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    const chunks = [];
    const sock = net.connect(socket, () => sock.write(Buffer.concat([head, body])));
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => resolve(JSON.parse(Buffer.concat(chunks).subarray(4).toString())));
  });
}

async function start(name, env) {
  const dir = fs.mkdtempSync(path.join(work, `${name}-`));
  const tag = `bench-${name}-${Date.now()}`;
  const inits = path.join(dir, 'inits');
  const lines = [];
  const child = spawn(process.execPath, [cli], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PYTHONPATH: work,
      ASYA_PYTHONEXECUTABLE: opt.python,
      ASYA_HANDLER: 'preload_bench.Model.process',
      ASYA_SOCKET_DIR: dir,
      ASYA_LOG_FORMAT: 'json',
      ASYA_LOG_MESSAGES: 'false',
      BENCH_TAG: tag,
      BENCH_INITS: inits,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let pending = '';
  child.stderr.on('data', (c) => {
    pending += c;
    const parts = pending.split('\n');
    pending = parts.pop();
    for (const l of parts) {
      try {
        lines.push(JSON.parse(l));
      } catch {}
    }
  });
  const exited = new Promise((r) => child.on('exit', r));
  const socket = path.join(dir, 'asya-runtime.sock');
  await until(() => fs.existsSync(path.join(dir, 'runtime-ready')), 120_000, `${name} ready`);
  return {
    socket,
    lines,
    tag,
    inits: () => fs.readFileSync(inits, 'utf8').split('\n').filter(Boolean).length,
    waitLog: (pred) => until(() => lines.find(pred), 60_000, 'a log line'),
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function until(probe, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** PSS of every process whose environment carries the tag, in MiB, by process name. */
function pss(tag) {
  const by = {};
  let total = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (!fs.readFileSync(`/proc/${e}/environ`, 'latin1').includes(`BENCH_TAG=${tag}\0`)) continue;
      const kb = Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${e}/smaps_rollup`, 'utf8'))[1]);
      const comm = fs.readFileSync(`/proc/${e}/comm`, 'utf8').trim();
      if (comm === 'node') continue; // the supervisor: the target is about the Python processes
      by[comm] = (by[comm] ?? 0) + kb / 1024;
      total += kb / 1024;
    } catch {}
  }
  return { total, by };
}

const results = {};

// 1. Memory
console.log(`memory: ${MODEL_MB} MB numpy model, ASYA_WORKERS=4, PSS of every Python process of the runtime`);
for (const [name, env] of [
  ['spawn', {}],
  ['preload', { ASYA_PRELOAD: 'true' }],
]) {
  const rt = await start(`mem-${name}`, { ...env, ASYA_WORKERS: '4', BENCH_MODEL_MB: String(MODEL_MB) });
  await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(() => exchange(rt.socket, { cpu: 0.05 })));
  const m = pss(rt.tag);
  results[`memory_${name}`] = m;
  console.log(
    `  ${name.padEnd(8)} total ${fmt(m.total)} MiB  (${Object.entries(m.by)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(', ')})`,
  );
  await rt.stop();
}
const oneSpawned = results.memory_spawn.total / 4;
console.log(
  `  one spawn-mode worker: ${fmt(oneSpawned)} MiB; spawn mode holds ${(results.memory_spawn.total / oneSpawned).toFixed(2)}x, ` +
    `preload ${(results.memory_preload.total / oneSpawned).toFixed(2)}x (target at most 1.5x)`,
);

// 2. Replacement
console.log('replacement: ASYA_WORKERS=1, __init__ 3 s');
for (const [name, env] of [
  ['spawn', {}],
  ['preload', { ASYA_PRELOAD: 'true' }],
]) {
  const rt = await start(`repl-${name}`, {
    ...env,
    BENCH_INIT_SECONDS: '3',
    ASYA_HANDLER_TIMEOUT: '0.5',
    ASYA_HANDLER_KILL_GRACE: '0.2',
  });
  const first = await exchange(rt.socket, {});
  await new Promise((r) => setTimeout(r, 300)); // the spare (preload) has forked: an idle worker, as in a pod
  const killed = process.hrtime.bigint();
  process.kill(first[0].payload.pid, 'SIGKILL');
  await rt.waitLog((l) => String(l.msg).startsWith('Python process died'));
  await exchange(rt.socket, {});
  const afterKill = Number(process.hrtime.bigint() - killed) / 1e6;
  await new Promise((r) => setTimeout(r, 300));
  const stuck = exchange(rt.socket, { stuck: true });
  const next = exchange(rt.socket, {});
  await stuck;
  const answered = process.hrtime.bigint();
  await next;
  const afterHard = Number(process.hrtime.bigint() - answered) / 1e6;
  results[`replacement_${name}`] = { sigkill_ms: afterKill, hard_limit_ms: afterHard, inits: rt.inits() };
  console.log(
    `  ${name.padEnd(8)} SIGKILL to next answer ${fmt(afterKill)} ms; hard time limit to next answer ${fmt(afterHard)} ms; __init__ ran ${rt.inits()} times`,
  );
  await rt.stop();
}

// 3. Recycling
console.log(`recycling: ${recycleMessages} sequential messages of 5 ms CPU, preload`);
for (const [name, env] of [
  ['none', { ASYA_PRELOAD: 'true' }],
  ['every 10', { ASYA_PRELOAD: 'true', ASYA_WORKER_MAX_MESSAGES: '10' }],
  ['spawn, every 10', { ASYA_WORKER_MAX_MESSAGES: '10' }],
]) {
  const rt = await start(`recycle-${name.replace(/\W/g, '')}`, env);
  for (let i = 0; i < 20; i++) await exchange(rt.socket, { cpu: 0.005 });
  const started = process.hrtime.bigint();
  for (let i = 0; i < recycleMessages; i++) await exchange(rt.socket, { cpu: 0.005 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  results[`recycle_${name}`] = { msg_per_s: recycleMessages / seconds, inits: rt.inits() };
  console.log(`  ${name.padEnd(16)} ${fmt(recycleMessages / seconds)} msg/s; __init__ ran ${rt.inits()} times`);
  await rt.stop();
}
console.log(
  `  recycling every 10 with preload: ${(results['recycle_every 10'].msg_per_s / results.recycle_none.msg_per_s).toFixed(2)}x the throughput without recycling (target at least 0.8x)`,
);
fs.mkdirSync(path.join(root, 'docs', 'bench'), { recursive: true });
fs.writeFileSync(path.join(root, 'docs', 'bench', 'preload.json'), `${JSON.stringify(results, null, 2)}\n`);
