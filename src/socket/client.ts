/**
 * A client that talks to the runtime exactly like the sidecar: connect, send one framed
 * envelope, read one framed array, and the runtime closes the connection.
 */
import net from 'node:net';
import { FrameDecoder, lengthPrefix } from './framing.js';

export async function exchange(socketPath: string, request: Buffer, timeoutMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const decoder = new FrameDecoder(2 ** 32 - 1);
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs > 0)
      timer = setTimeout(() => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    let answered = false;
    socket.on('connect', () => {
      socket.write(lengthPrefix(request.length));
      socket.write(request);
    });
    socket.on('data', (chunk: Buffer) =>
      decoder.push(chunk, (frame) => {
        answered = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(Buffer.from(frame));
      }),
    );
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!answered) reject(new Error('the runtime closed the connection without an answer'));
    });
  });
}
