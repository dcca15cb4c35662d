#!/usr/bin/env node
// Leak check (not a timed test): runs N messages through one runtime, mixing successes, handler
// errors, malformed frames, interpreter crashes and clients that disconnect early, and reports the
// supervisor's RSS and open file descriptors before and after. Usage:
//   npm run build && node scripts/leak-check.mjs [messages=20000]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const total = Number(process.argv[2] ?? 20000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-leak-'));
const sock = path.join(dir, 'asya-runtime.sock');
const child = spawn(process.execPath, [path.join(root, 'dist', 'cli.js')], {
  env: {
    ...process.env,
    ASYA_HANDLER: 'leak_handler.process',
    ASYA_SOCKET_DIR: dir,
    ASYA_LOG_LEVEL: 'ERROR',
    PYTHONPATH: dir,
  },
  stdio: ['ignore', 'ignore', 'ignore'],
});
fs.writeFileSync(
  path.join(dir, 'leak_handler.py'),
  `import os
def process(p):
    if p.get("raise"): raise ValueError("bad")
    if p.get("crash"): os._exit(1)
    return {**p, "ok": True}
`,
);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sample = () => {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
  return { rssMiB: Math.round(rss * 10) / 10, fds: fs.readdirSync(`/proc/${child.pid}/fd`).length };
};
function frame(obj) {
  const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}
function exchange(bytes, disconnectEarly = false) {
  return new Promise((resolve) => {
    const s = net.connect(sock, () => {
      s.write(bytes);
      if (disconnectEarly) s.destroy();
    });
    s.on('data', () => undefined);
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}
async function ready() {
  while (!fs.existsSync(path.join(dir, 'runtime-ready'))) await sleep(20);
}

await ready();
const route = { actors: ['a', 'b'], current: 0 };
for (let i = 0; i < 500; i++) await exchange(frame({ route, payload: { i } })); // warm-up
global.gc?.();
await sleep(500);
const before = sample();
const counts = { ok: 0, raised: 0, malformed: 0, crashed: 0, disconnected: 0 };
const started = Date.now();
for (let i = 0; i < total; i++) {
  if (i % 2000 === 1999) {
    counts.crashed++;
    await exchange(frame({ route, payload: { crash: true } }));
    await ready();
  } else if (i % 10 === 3) {
    counts.raised++;
    await exchange(frame({ route, payload: { raise: true } }));
  } else if (i % 10 === 5) {
    counts.malformed++;
    await exchange(frame(i % 20 === 5 ? 'null' : '{"payload":'));
  } else if (i % 10 === 7) {
    counts.disconnected++;
    await exchange(frame({ route, payload: { i, pad: 'x'.repeat(1000) } }), true);
  } else {
    counts.ok++;
    await exchange(frame({ route, headers: { t: String(i) }, payload: { i, text: 'y'.repeat(i % 4096) } }));
  }
}
await sleep(2000);
await ready();
const after = sample();
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
fs.rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({ messages: total, seconds: (Date.now() - started) / 1000, counts, before, after }, null, 2),
);
