#!/usr/bin/env node
// The supervisor's CPU per message against the handler's time: sequential 100 B messages, one connection
// each (the sidecar's way), a handler that burns BURN_MS of CPU; CPU from the supervisor's threads'
// schedstat (nanoseconds). SLEEP=1: the handler sleeps BURN_MS instead (no CPU of its own to compete
// with the supervisor's). WARM=n (default 2000): messages first handled at once (the handler's time
// comes with each message), so V8 has compiled the per-message path before the measured ones.
// Usage, after npm run build:
//   node bench/cpu-per-message.mjs [dist/cli.js] [burn ms, default 0] [messages, default 300]
//   LEVEL=WARNING NODEFLAGS="--no-memory-reducer" node bench/cpu-per-message.mjs dist/cli.js 20 150
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const cli = process.argv[2] ?? new URL('../dist/cli.js', import.meta.url).pathname;
const burnMs = Number(process.argv[3] ?? 0);
const N = Number(process.argv[4] ?? 300);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-cpu-'));
fs.writeFileSync(
  path.join(dir, 'h.py'),
  process.env.SLEEP
    ? `import time\ndef process(p):\n    time.sleep(p['ms'] / 1000)\n    return p\n`
    : `import time\ndef process(p):\n    end = time.perf_counter() + p['ms'] / 1000\n    while time.perf_counter() < end:\n        pass\n    return p\n`,
);
const child = spawn(process.execPath, [...(process.env.NODEFLAGS ? process.env.NODEFLAGS.split(' ') : []), cli], {
  env: {
    ...process.env,
    ASYA_HANDLER: 'h.process',
    ASYA_SOCKET_DIR: dir,
    PYTHONPATH: dir,
    ASYA_LOG_LEVEL: process.env.LEVEL ?? 'INFO',
  },
  stdio: ['ignore', 'ignore', 'ignore'],
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
while (!fs.existsSync(path.join(dir, 'runtime-ready'))) await sleep(20);
const cpu = (pid) => {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {}
  }
  return ns;
};
/** One request whose handler takes `ms`. */
const frameFor = (ms) => {
  const body = Buffer.from(
    JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: { t: 'x'.repeat(60), ms } }),
  );
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
};
const one = (frame) =>
  new Promise((resolve) => {
    const s = net.connect(path.join(dir, 'asya-runtime.sock'));
    s.on('data', () => {});
    s.on('close', resolve);
    // The sidecar writes its request and reads the answer without half-closing; HALF=1 half-closes.
    if (process.env.HALF) s.end(frame);
    else s.write(frame);
  });
const warm = frameFor(0);
for (let i = 0; i < Number(process.env.WARM ?? 2000); i++) await one(warm);
const measured = frameFor(burnMs);
const switches = () =>
  Number(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/^voluntary_ctxt_switches:\s+(\d+)/m)[1]);
const a = cpu(child.pid);
const wakesBefore = switches();
for (let i = 0; i < N; i++) {
  await one(measured);
  if (process.env.GAP) await sleep(Number(process.env.GAP));
}
const b = cpu(child.pid);
const wakes = (switches() - wakesBefore) / N;
console.log(
  `${process.env.SLEEP ? 'sleep' : 'burn'} ${burnMs} ms: supervisor CPU ${((b - a) / 1e6 / N).toFixed(3)} ms/msg, ` +
    `its main thread woken ${wakes.toFixed(2)} times a message`,
);
child.kill('SIGTERM');
child.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
