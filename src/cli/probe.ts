/**
 * `asya-runtime probe`: the readiness probe, with nothing else in the image (no shell, no `test`).
 * Ready means the ready file exists and the socket accepts a connection; the runtime takes a
 * connection that closes without a request as a probe, silently.
 */
import fs from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { readyFileOf, socketPathOf } from '../config.js';
import { positiveSeconds, UsageError } from './messages.js';

export const probeHelp = `Usage: asya-runtime probe [--socket PATH] [--timeout SECONDS]

Exit 0 when the runtime is ready: its ready file exists and its socket accepts a connection. Otherwise
exit 1 with one line on stderr that says why. "Accepts" is the kernel's: a connection succeeds while the
socket's queue has room, so a runtime that is frozen (SIGSTOP) but whose queue is not full still passes;
a runtime that exited, or whose queue is full, does not. Run it with the runtime's environment (the same
container), e.g. as a Kubernetes readinessProbe:
  readinessProbe:
    exec:
      command: ["/asya/bin/asya-runtime", "probe"]

Options:
  --socket PATH      the runtime's socket (default: as the runtime finds it: $ASYA_SOCKET_PATH,
                     else $ASYA_SOCKET_DIR/$ASYA_SOCKET_NAME); the ready file is beside it
  --timeout SECONDS  how long the socket may take to accept (default: 1)
  -h, --help

Exit code: 0 ready, 1 not ready, 2 bad usage.`;

const DEFAULT_TIMEOUT_S = 1;

export async function probe(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { socket: { type: 'string' }, timeout: { type: 'string' } } });
  const timeoutMs =
    (values.timeout === undefined ? DEFAULT_TIMEOUT_S : positiveSeconds('--timeout', values.timeout)) * 1000;
  if (values.socket === '') throw new UsageError('--socket "" is not a path');
  const socket = values.socket ?? socketPathOf(process.env);
  const why = notReady(readyFileOf(socket)) ?? (await refuses(socket, timeoutMs));
  if (why === null) return 0;
  process.stderr.write(`not ready: ${why}\n`);
  return 1;
}

function notReady(readyFile: string): string | null {
  try {
    if (fs.statSync(readyFile).isFile()) return null;
    return `${readyFile} is not a file`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `no ready file at ${readyFile} (the runtime is starting, reloading or stopped)`;
    return `cannot read the ready file ${readyFile}: ${code ?? (err as Error).message}`;
  }
}

/** Why the socket does not accept a connection within the time, or null when it does. */
function refuses(socketPath: string, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const done = (why: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(
      () =>
        done(
          `the socket ${socketPath} did not accept a connection within ${timeoutMs} ms (the runtime is stuck or overloaded)`,
        ),
      timeoutMs,
    );
    socket.on('connect', () => {
      socket.end(); // a connection without a request: the runtime's probe
      done(null);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const notSocket = fs.statSync(socketPath, { throwIfNoEntry: false })?.isSocket() === false;
      const reasons: Record<string, string> = {
        ENOENT: `no socket at ${socketPath}`,
        ECONNREFUSED: notSocket
          ? `${socketPath} is not a socket`
          : `nothing listens on ${socketPath} (the runtime is not running)`,
        EACCES: `permission denied connecting to ${socketPath}`,
        EAGAIN: `the socket ${socketPath} has a full queue of connections nobody accepts (the runtime is stuck or overloaded)`,
      };
      done(reasons[err.code ?? ''] ?? `cannot connect to ${socketPath}: ${err.message}`);
    });
  });
}
