#!/usr/bin/env node
// Memory after a burst (not a timed test): starts one runtime with an echo handler, sends a burst of
// concurrent large messages, and prints the supervisor's RSS (VmRSS) at idle, at the burst's peak and
// every few seconds after it. Usage:
//   npm run build && node scripts/burst-memory.mjs [--clients 40] [--size 10000000] [--after 60] [--every 5] [-- node args]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({
  options: {
    clients: { type: 'string', default: '40' },
    size: { type: 'string', default: '10000000' },
    after: { type: 'string', default: '60' },
    every: { type: 'string', default: '5' },
  },
  allowPositionals: true,
});
const clients = Number(values.clients);
const size = Number(values.size);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-burst-'));
fs.writeFileSync(path.join(dir, 'burst_handler.py'), 'def process(p):\n    return p\n');
const child = spawn(process.execPath, [...positionals, path.join(root, 'dist', 'cli.js')], {
  env: {
    ...process.env,
    ASYA_HANDLER: 'burst_handler.process',
    ASYA_SOCKET_DIR: dir,
    ASYA_LOG_LEVEL: 'INFO',
    PYTHONPATH: dir,
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const sock = path.join(dir, 'asya-runtime.sock');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
const fmt = (mib) => `${mib.toFixed(1)} MiB`;

function exchange(bytes) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect(sock, () => s.write(bytes));
    s.on('data', (c) => (got += c.length));
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

while (!fs.existsSync(path.join(dir, 'runtime-ready'))) await sleep(20);
console.log(`supervisor pid ${child.pid}`);
const body = Buffer.from(
  JSON.stringify({ route: { actors: ['a', 'b'], current: 0 }, payload: { text: 'x'.repeat(size) } }),
);
const frame = Buffer.concat([Buffer.alloc(4), body]);
frame.writeUInt32BE(body.length);
await sleep(1000);
const idle = rssMiB();
let peak = idle;
const poll = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
const t0 = Date.now();
const answered = await Promise.all(Array.from({ length: clients }, () => exchange(frame)));
const burstMs = Date.now() - t0;
clearInterval(poll);
peak = Math.max(peak, rssMiB());
const bad = answered.filter((n) => n < size).length;
console.log(
  `${clients} clients x ${size} bytes in ${(burstMs / 1000).toFixed(1)} s (${bad} short answers); idle ${fmt(idle)}, peak ${fmt(peak)}`,
);
const after = [];
for (let s = 0; s <= Number(values.after); s += Number(values.every)) {
  if (s > 0) await sleep(Number(values.every) * 1000);
  after.push(`${s}s ${rssMiB().toFixed(0)}`);
}
console.log(`after the burst (MiB): ${after.join(', ')}`);
console.log(`final - idle: ${fmt(rssMiB() - idle)}`);
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
fs.rmSync(dir, { recursive: true, force: true });
