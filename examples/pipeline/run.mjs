#!/usr/bin/env node
// The seeds' pipeline, locally: preprocessor -> classifier -> translator, one runtime per actor,
// each on its own socket. This script plays the sidecars and the queues: it sends the envelope to
// the actor that route.current names, takes the output envelopes, and passes each on, exactly as
// the Go sidecar would, until the route is done.
//
//   node examples/pipeline/run.mjs '{"text": "Hello World"}'
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exchange } from '../../dist/socket/client.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', '..', 'dist', 'cli.js');
const actors = {
  preprocessor: 'preprocessor.process',
  classifier: 'classifier.TextClassifier.process',
  translator: 'translator.process',
};

const payload = JSON.parse(process.argv[2] ?? '{"text": "Hello World"}');
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-pipeline-'));
const runtimes = Object.entries(actors).map(([name, handler]) => {
  const dir = path.join(base, name);
  const child = spawn(process.execPath, [cli], {
    env: { ...process.env, ASYA_HANDLER: handler, ASYA_SOCKET_DIR: dir, ASYA_LOG_LEVEL: process.env.ASYA_LOG_LEVEL ?? 'WARNING', PYTHONPATH: here },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return { name, dir, child, socket: path.join(dir, 'asya-runtime.sock') };
});

try {
  // The readiness probe of the seeds: the ready file in the socket directory.
  for (const rt of runtimes) {
    while (!fs.existsSync(path.join(rt.dir, 'runtime-ready'))) {
      if (rt.child.exitCode !== null) throw new Error(`${rt.name} exited with code ${rt.child.exitCode}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  let queue = [{ id: 'pipeline-1', route: { actors: Object.keys(actors), current: 0 }, payload }];
  console.log(`in:           ${JSON.stringify(payload)}`);
  while (queue.length) {
    const envelope = queue.shift();
    const actor = envelope.route.actors[envelope.route.current];
    if (actor === undefined) {
      console.log(`done:         ${JSON.stringify(envelope.payload)}`);
      continue;
    }
    const rt = runtimes.find((r) => r.name === actor);
    if (!rt) throw new Error(`no runtime for actor ${actor}`);
    const answer = JSON.parse((await exchange(rt.socket, Buffer.from(JSON.stringify(envelope)))).toString());
    for (const out of answer) {
      if (out.error) throw new Error(`${actor} answered ${out.error}: ${out.details.message}`);
      console.log(`${`${actor}:`.padEnd(14)}${JSON.stringify(out.payload)}`);
      queue.push({ id: envelope.id, headers: envelope.headers, ...out });
    }
  }
} finally {
  for (const rt of runtimes) rt.child.kill('SIGTERM');
  await Promise.all(runtimes.map((rt) => new Promise((r) => (rt.child.exitCode !== null ? r() : rt.child.on('exit', r)))));
  fs.rmSync(base, { recursive: true, force: true });
}
