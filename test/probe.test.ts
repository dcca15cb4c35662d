/**
 * `asya-runtime probe`: the readiness probe the manifests run, with nothing but the executable. It
 * passes exactly while the runtime can serve, says why not in one line, and leaves no trace in the
 * runtime's logs or error counts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CLI, env, runNode, startRuntime, tempDir, waitForExit } from './helpers.js';

const probe = (socketDir: string, args: string[] = []) =>
  runNode([CLI, 'probe', ...args], { env: { ASYA_SOCKET_DIR: socketDir } });

describe('asya-runtime probe', () => {
  it('passes while the runtime serves, silently for the runtime; fails with one line once it stops', async () => {
    const rt = await startRuntime({ handler: 'basic.echo', env: { ASYA_LOG_LEVEL: 'INFO' } });
    const socketDir = path.dirname(rt.socketPath);
    for (let i = 0; i < 3; i++) {
      const ok = await probe(socketDir);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout + ok.stderr, '', 'a passing probe prints nothing');
    }
    // A real message after the probes: every log line up to its answer is accounted for.
    assert.deepEqual(await rt.send(env({ n: 1 })), [
      { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: { n: 1 } },
    ]);
    await rt.waitForLog((l) => l.msg === 'message handled');
    const noise = rt.logs.filter((l) => l.level !== 'info' || /connection|request|probe/.test(l.msg));
    assert.deepEqual(noise, [], 'the probes left nothing in the logs at INFO');
    await rt.stop();
    const after = await probe(socketDir);
    assert.equal(after.code, 1);
    assert.match(
      after.stderr,
      /^not ready: no ready file at .*runtime-ready \(the runtime is starting, reloading or stopped\)\n$/,
    );
  });

  it('a ready file a killed runtime left behind: nothing listens, exit 1', async () => {
    const rt = await startRuntime({ handler: 'basic.echo' });
    const socketDir = path.dirname(rt.socketPath);
    const pid = rt.child.pid as number;
    process.kill(pid, 'SIGKILL'); // no shutdown: what the OOM killer leaves
    await waitForExit(pid, 'the killed runtime');
    assert.ok(fs.existsSync(rt.readyFile), 'SIGKILL leaves the ready file');
    const r = await probe(socketDir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^not ready: nothing listens on .*asya-runtime\.sock \(the runtime is not running\)\n$/);
    await rt.stop();
  });

  it('a socket that never accepts: exit 1 within the timeout; bad usage exits 2', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'runtime-ready'), '');
    const missing = await probe(dir);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^not ready: no socket at /);
    fs.writeFileSync(path.join(dir, 'asya-runtime.sock'), 'a regular file');
    const notSocket = await probe(dir);
    assert.equal(notSocket.code, 1);
    assert.match(notSocket.stderr, /^not ready: .*asya-runtime\.sock is not a socket\n$/);
    const bad = await probe(dir, ['--timeout', 'soon']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--timeout "soon" is not valid/);
    fs.rmSync(dir, { recursive: true });
  });
});
