/**
 * The packaged executable: built by the Dockerfile's steps (scripts/build-carrier.sh), run with no
 * Node.js anywhere, in a Debian root filesystem that only has Python, and with several Pythons.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import {
  asError,
  connects,
  env,
  HANDLERS,
  listensOnTcp,
  pyenvPython,
  quietFor,
  ROOT,
  rawExchange,
  runToExit,
  startRuntime,
  TEST_VENV_PYTHON,
  tempDir,
  until,
} from './helpers.js';
import { SAVE_KINDS, seededSaves } from './watch-saves.js';

const CARRIER = path.join(ROOT, 'dist', 'carrier', 'rootfs');
const EXE = path.join(CARRIER, 'asya-runtime');
const ROOTFS = path.join(ROOT, '.cache', 'rootfs-bookworm');

/** A PATH with one directory holding only the given interpreter, under the given name: no node. */
function pathWithOnly(python: string, name = 'python3'): string {
  const dir = path.join(tempDir('asya-path-'), 'bin');
  fs.mkdirSync(dir);
  fs.symlinkSync(python, path.join(dir, name));
  return dir;
}

const SYSTEM_PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

before(
  () => {
    execFileSync('bash', [path.join(ROOT, 'scripts', 'build-carrier.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  },
  { timeout: 600_000 },
);

describe('the Dockerfile and scripts/build-carrier.sh', () => {
  it('perform the same steps', () => {
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const script = fs.readFileSync(path.join(ROOT, 'scripts', 'build-carrier.sh'), 'utf8');
    const runs = [...dockerfile.matchAll(/^RUN (.+)$/gm)].map((m) => m[1]!);
    assert.ok(runs.length >= 3);
    for (const run of runs)
      assert.ok(script.includes(`(cd "$src" && ${run})`), `build-carrier.sh lacks the Dockerfile step: RUN ${run}`);
    const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)].flatMap((m) => m[1]!.split(' '));
    for (const source of copies)
      assert.ok(script.includes(`"$root/${source}"`), `build-carrier.sh does not copy ${source}`);
    const carried = [...dockerfile.matchAll(/^COPY --from=build \/src\/(\S+) \/(\S+)$/gm)];
    assert.equal(carried.length, 1, 'the carrier holds one file');
    assert.ok(script.includes(`cp "$src/${carried[0]![1]}" "$out/rootfs/${carried[0]![2]}"`));
  });

  it('produce one executable of a documented size', () => {
    const mib = fs.statSync(EXE).size / 2 ** 20;
    assert.ok(mib > 50 && mib < 150, `${mib} MiB`);
    // The size docs/deploy states is the one built (within 1 MiB: the supervisor's own code moves it a little).
    const stated = /\| Size \| ([\d.]+) MiB/.exec(
      fs.readFileSync(path.join(ROOT, 'docs', 'deploy', 'README.md'), 'utf8'),
    );
    assert.ok(
      stated && Math.abs(Number(stated[1]) - mib) < 1,
      `docs/deploy says ${stated?.[1]} MiB, the build is ${mib.toFixed(1)}`,
    );
    assert.deepEqual(fs.readdirSync(CARRIER), ['asya-runtime']);
  });
});

describe('the executable, with only a python3 on PATH', () => {
  let rt: Awaited<ReturnType<typeof startRuntime>>;
  const onlyPython = pathWithOnly(SYSTEM_PYTHON);
  before(async () => {
    rt = await startRuntime({ executable: EXE, handler: 'basic.enrich', env: { PATH: onlyPython } });
  });
  after(async () => {
    await rt.stop();
  });

  it('serves payloads, errors and malformed frames', async () => {
    assert.deepEqual(await rt.send(env({ text: 'Hi There' })), [
      { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: { text: 'Hi There', seen: true } },
    ]);
    assert.equal(
      asError(JSON.parse((await rawExchange(rt.socketPath, Buffer.from('[1]')))!.toString())).error,
      'msg_parsing_error',
    );
    assert.equal(asError(await rt.send(env('not a dict'))).error, 'processing_error');
    // Every line on stderr is a JSON record, nothing else: the runtime once set a V8 flag this Node's V8
    // does not have, and V8 printed its error between the records.
    const stray = rt.stderrText.filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(stray, [], 'lines on stderr that are not JSON records');
  });

  it('reports the interpreter it found; the shim arrived without a file, and not on the command line', async () => {
    const loaded = await rt.waitForLog((l) => l.msg === 'handler loaded');
    assert.equal(fs.realpathSync(String(loaded.executable)), fs.realpathSync(SYSTEM_PYTHON));
    // ps and /proc/PID/cmdline show a few lines of bootstrap, not the 17 KB shim
    const cmdline = fs.readFileSync(`/proc/${Number(loaded.python_pid)}/cmdline`, 'utf8');
    assert.ok(cmdline.length < 600, `the Python command line is ${cmdline.length} bytes`);
    assert.match(cmdline, /-c\0import os/);
  });

  it('runs on the Node.js package.json pins (executableNode), a maintained 24.x LTS, not the Node that built it', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
      executableNode: { version: string };
    };
    assert.match(pkg.executableNode.version, /^24\.\d+\.\d+$/);
    const started = await rt.waitForLog((l) => l.msg === 'starting Asya runtime');
    assert.equal(started.node, pkg.executableNode.version);
    assert.equal(started.version, pkg.version);
    assert.equal(execFileSync(EXE, ['--version'], { env: {}, encoding: 'utf8' }).trim(), pkg.version);
  });

  it('SIGTERM: drains, removes socket and ready file, exits 0', async () => {
    const stopped = await rt.stop();
    assert.equal(stopped.code, 0);
    assert.equal(fs.existsSync(rt.socketPath), false);
    rt = await startRuntime({ executable: EXE, handler: 'basic.echo', env: { PATH: onlyPython } });
  });

  it('ASYA_PRELOAD: the template and its porters take their source from the executable too', async () => {
    const own = await startRuntime({
      executable: EXE,
      handler: 'basic.echo',
      env: { PATH: onlyPython, ASYA_PRELOAD: 'true', ASYA_WORKERS: '2', ASYA_WORKER_MAX_MESSAGES: '2' },
    });
    for (let n = 0; n < 6; n++)
      assert.deepEqual(((await own.send(env({ n }))) as Array<{ payload: unknown }>)[0]?.payload, { n });
    assert.equal(own.logs.filter((l) => String(l.msg).startsWith('template loaded')).length, 1);
    assert.ok(
      own.logs.filter((l) => l.msg === 'handler loaded' && l.forked === true).length >= 3,
      'forked workers served',
    );
    assert.equal((await own.stop()).code, 0);
  });

  it('SIGUSR1 opens no debugger in the executable either; SIGQUIT shuts it down cleanly', async () => {
    const own = await startRuntime({ executable: EXE, handler: 'basic.echo', env: { PATH: onlyPython } });
    try {
      const before = await connects(9229); // another process on this machine might hold the port
      own.child.kill('SIGUSR1');
      await own.waitForLog((l) => l.msg === 'ignored SIGUSR1: the runtime never opens a debugger');
      await quietFor(500, 'negative: the inspector, were it started, would be listening by now');
      assert.equal(listensOnTcp(own.child.pid!, 9229), false);
      if (!before) assert.equal(await connects(9229), false);
      assert.deepEqual(await own.send(env(1)), [{ route: { actors: ['a', 'b', 'c'], current: 1 }, payload: 1 }]);
      const dir = path.dirname(own.socketPath);
      own.child.kill('SIGQUIT');
      assert.equal((await own.exited).code, 0);
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      await own.stop();
    }
  });

  it('call and check work from the executable', () => {
    const out = execFileSync(EXE, ['call', '--handler', 'basic.echo', '{"x": 1}'], {
      env: { PATH: onlyPython, PYTHONPATH: HANDLERS },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    assert.deepEqual(JSON.parse(out), [{ route: { actors: ['actor'], current: 1 }, payload: { x: 1 } }]);
    const ok = execFileSync(EXE, ['check', '--handler', 'classes.Counter.process'], {
      env: { PATH: onlyPython, PYTHONPATH: HANDLERS },
      encoding: 'utf8',
    });
    assert.match(ok, /^ok: classes\.Counter\.process \(method/);
  });
});

describe('interpreter resolution by the executable', () => {
  it('an image with only `python`: ASYA_PYTHONEXECUTABLE=python works; without it a FATAL names python3', async () => {
    const onlyPython = pathWithOnly(SYSTEM_PYTHON, 'python');
    const rt = await startRuntime({
      executable: EXE,
      handler: 'basic.echo',
      env: { PATH: onlyPython, ASYA_PYTHONEXECUTABLE: 'python' },
    });
    try {
      assert.deepEqual(await rt.send(env(1)), [{ route: { actors: ['a', 'b', 'c'], current: 1 }, payload: 1 }]);
    } finally {
      await rt.stop();
    }
    const missing = await runToExit({ executable: EXE, handler: 'basic.echo', env: { PATH: onlyPython } });
    assert.equal(missing.code, 3);
    assert.match(missing.text, /Python interpreter not found: the default \\"python3\\" is not on PATH/);
  });

  for (const minor of ['3.7', '3.13']) {
    it(`the same handler under Python ${minor}`, async (t) => {
      const python = pyenvPython(minor);
      if (!python) return t.skip(`no Python ${minor} under pyenv`);
      const rt = await startRuntime({ executable: EXE, handler: 'basic.enrich', env: { PATH: pathWithOnly(python) } });
      try {
        const [out] = (await rt.send(env({ text: 'a b' }))) as Array<{ payload: { seen: boolean } }>;
        assert.equal(out?.payload.seen, true);
        assert.match(
          String((await rt.waitForLog((l) => l.msg === 'handler loaded')).python),
          new RegExp(`^${minor.replace('.', '\\.')}\\.`),
        );
      } finally {
        await rt.stop();
      }
    });
  }

  it('a virtualenv whose numpy the system Python lacks, activated by PATH', async () => {
    const rt = await startRuntime({
      executable: EXE,
      handler: 'numpy_handlers.top_array',
      env: { PATH: path.dirname(TEST_VENV_PYTHON) },
    });
    try {
      assert.deepEqual(await rt.send(env({})), [
        { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: [1, 2, 3] },
      ]);
    } finally {
      await rt.stop();
    }
  });
});

describe('call --watch from the executable (built in before())', () => {
  it(`sees every save: ${SAVE_KINDS}`, (t) => seededSaves(t, 0, EXE));
});

describe('an unchanged image: Debian with only Python (debootstrap), the executable mounted in', () => {
  it("serves a client outside the root filesystem through the shared socket directory; the manifests' probe passes inside", async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for chroot');
    assert.ok(
      fs.existsSync(path.join(ROOTFS, '.complete')),
      'scripts/make-rootfs.sh did not build the root filesystem',
    );
    assert.equal(fs.existsSync(path.join(ROOTFS, 'usr', 'bin', 'node')), false, 'the image has no Node.js');
    // What the init container does: copy the executable into a volume the model container mounts.
    fs.mkdirSync(path.join(ROOTFS, 'asya', 'bin'), { recursive: true });
    fs.rmSync(path.join(ROOTFS, 'asya', 'bin', 'asya-runtime'), { force: true });
    fs.copyFileSync(EXE, path.join(ROOTFS, 'asya', 'bin', 'asya-runtime'));
    fs.chmodSync(path.join(ROOTFS, 'asya', 'bin', 'asya-runtime'), 0o755);
    fs.mkdirSync(path.join(ROOTFS, 'app'), { recursive: true });
    fs.copyFileSync(path.join(HANDLERS, 'basic.py'), path.join(ROOTFS, 'app', 'basic.py'));
    // Debian's /var/run is a link to /run: from outside, the socket directory is <rootfs>/run/asya.
    const socketDir = path.join(ROOTFS, 'run', 'asya');
    fs.rmSync(socketDir, { recursive: true, force: true });
    // The manifests' probe, run inside with the runtime's environment: the executable alone, no shell.
    const probeOk = () => spawnStatus(['chroot', ROOTFS, '/asya/bin/asya-runtime', 'probe'], PROBE_ENV) === 0;

    const child = spawn(
      'unshare',
      [
        '--mount',
        '--pid',
        '--fork',
        '--kill-child',
        `--root=${ROOTFS}`,
        '--mount-proc',
        'env',
        '-i',
        'PATH=/usr/local/bin:/usr/bin:/bin',
        'PYTHONPATH=/app',
        'ASYA_HANDLER=basic.enrich',
        'ASYA_SOCKET_DIR=/var/run/asya',
        '/asya/bin/asya-runtime',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let logs = '';
    child.stderr.on('data', (c) => (logs += c));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await until(() => `the readiness probe to pass within 30 s:\n${logs}`, probeOk, 30_000, 50);
      const answer = await rawExchange(
        path.join(socketDir, 'asya-runtime.sock'),
        Buffer.from(JSON.stringify(env({ text: 'From Outside' }))),
      );
      assert.deepEqual(JSON.parse(answer!.toString()), [
        { route: { actors: ['a', 'b', 'c'], current: 1 }, payload: { text: 'From Outside', seen: true } },
      ]);
      assert.match(logs, /"executable":"\/usr\/bin\/python3"/);
      // SIGTERM to the runtime (PID 1 of its namespace), as the kubelet would; unshare exits with its code
      const runtimePid = Number(execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).trim());
      process.kill(runtimePid, 'SIGTERM');
      assert.equal(await exited, 0, logs);
    } finally {
      child.kill('SIGKILL'); // no-op when it has exited; otherwise --kill-child takes the runtime with it
    }
    assert.equal(probeOk(), false, 'the probe fails once the runtime has stopped');
  });
});

describe('docs/deploy manifests', () => {
  const docs = (name: string) =>
    YAML.parseAllDocuments(fs.readFileSync(path.join(ROOT, 'docs', 'deploy', name), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], `${name}: ${d.errors.join('; ')}`);
      // biome-ignore lint/suspicious/noExplicitAny: free-form Kubernetes YAML, read by path
      return d.toJS() as Record<string, any>;
    });

  it('injection.yaml: the init container fills the volume the runtime runs from; the socket volume is shared; the probe is the executable', () => {
    const [deployment] = docs('injection.yaml');
    assert.equal(deployment!.kind, 'Deployment');
    const pod = deployment!.spec.template.spec;
    const [init] = pod.initContainers;
    const runtime = pod.containers.find((c: { name: string }) => c.name === 'asya-runtime');
    const sidecar = pod.containers.find((c: { name: string }) => c.name === 'asya-sidecar');
    const binMount = init.volumeMounts[0];
    assert.equal(
      init.command.at(-1),
      path.posix.join(binMount.mountPath, 'asya-runtime'),
      'init copies into its mount',
    );
    const runtimeBin = runtime.volumeMounts.find((m: { name: string }) => m.name === binMount.name);
    assert.equal(runtime.command[0], path.posix.join(runtimeBin.mountPath, 'asya-runtime'));
    const socketDir = runtime.env.find((e: { name: string }) => e.name === 'ASYA_SOCKET_DIR').value;
    const mountOf = (c: { volumeMounts: Array<{ name: string; mountPath: string }> }) =>
      c.volumeMounts.find((m) => m.mountPath === socketDir)?.name;
    assert.ok(
      mountOf(runtime) && mountOf(runtime) === mountOf(sidecar),
      'runtime and sidecar share the socket directory',
    );
    assert.deepEqual(
      runtime.readinessProbe.exec.command,
      [runtime.command[0], 'probe'],
      'the probe is the runtime executable itself: no shell needed in the image',
    );
    const volumes = pod.volumes.map((v: { name: string }) => v.name);
    for (const c of [init, runtime, sidecar])
      for (const m of c.volumeMounts) assert.ok(volumes.includes(m.name), `volume ${m.name} is declared`);
    assert.ok(pod.terminationGracePeriodSeconds > 25, 'longer than ASYA_SHUTDOWN_TIMEOUT');
    // Applied as it is: the module is importable, the two timeouts nest, memory is sized
    const value = (c: { env: Array<{ name: string; value: string }> }, name: string) =>
      c.env.find((e) => e.name === name)?.value;
    assert.ok(value(runtime, 'PYTHONPATH'), 'PYTHONPATH says where the handler module is');
    const handlerTimeout = Number(value(runtime, 'ASYA_HANDLER_TIMEOUT'));
    const sidecarTimeout = Number(/^(\d+)s$/.exec(value(sidecar, 'ASYA_RUNTIME_TIMEOUT') ?? '')?.[1]);
    assert.ok(
      handlerTimeout > 0 && sidecarTimeout > handlerTimeout,
      'ASYA_HANDLER_TIMEOUT below the sidecar ASYA_RUNTIME_TIMEOUT',
    );
    for (const c of [runtime, sidecar])
      assert.ok(
        c.resources?.requests?.memory && c.resources?.limits?.memory,
        `${c.name} has memory requests and limits`,
      );
    // Every ASYA_* variable the runtime is given is one the configuration reference documents
    const reference = fs.readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8');
    for (const { name } of runtime.env as Array<{ name: string }>) {
      if (name.startsWith('ASYA_'))
        assert.match(reference, new RegExp(`\\| \`${name}\` \\|`), `${name} is in docs/configuration.md`);
    }
  });

  it('asyncactor.yaml: the same container and handler', () => {
    const [actor] = docs('asyncactor.yaml');
    const [deployment] = docs('injection.yaml');
    assert.equal(actor!.kind, 'AsyncActor');
    const container = actor!.spec.workload.template.spec.containers[0];
    const runtime = deployment!.spec.template.spec.containers[0];
    assert.equal(container.image, runtime.image);
    assert.equal(container.env[0].value, runtime.env[0].value);
  });
});

/** What the kubelet's exec probe gets: the container's environment (here, the runtime's socket directory). */
const PROBE_ENV = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/bin', ASYA_SOCKET_DIR: '/var/run/asya' };

function spawnStatus(cmd: string[], env?: NodeJS.ProcessEnv): number | null {
  try {
    execFileSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore', env });
    return 0;
  } catch (err) {
    return (err as { status: number | null }).status;
  }
}
