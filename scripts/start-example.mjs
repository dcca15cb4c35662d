#!/usr/bin/env node
// `npm start`: the runtime on the bundled example handler, socket under the repo (.asya/).
// Any ASYA_* variable set in the environment wins over these defaults.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = {
  ASYA_HANDLER: 'hello.process',
  ASYA_SOCKET_DIR: path.join(root, '.asya'),
  ...process.env,
  PYTHONPATH: [path.join(root, 'examples', 'handlers'), process.env.PYTHONPATH].filter(Boolean).join(':'),
};
const socket = path.relative(
  process.cwd(),
  path.join(env.ASYA_SOCKET_DIR, env.ASYA_SOCKET_NAME || 'asya-runtime.sock'),
);
process.stderr.write(
  `\nServing ${env.ASYA_HANDLER} on ${socket}. In another terminal, send it a message:\n\n` +
    `  node dist/cli.js send --socket ${socket} '{"text": "  Hello World  "}'\n\nCtrl-C stops it.\n\n`,
);
const child = spawn(process.execPath, [path.join(root, 'dist', 'cli.js')], { env, stdio: 'inherit' });
// Ctrl-C on a terminal reaches every process of the foreground group, the runtime included: passing it on
// as well made the runtime see a second signal (and exit without its graceful shutdown). SIGTERM and a
// SIGINT sent to this process alone (no terminal) are passed on once.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (sig === 'SIGINT' && process.stdin.isTTY) return;
    child.kill(sig);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
