/**
 * Through the real pipeline: upstream's Go sidecar (built from source) and a private RabbitMQ, from
 * ../shared/pipeline (or $ASYA_PIPELINE_DIR), in front of this runtime. The seeds' three-actor pipeline in
 * payload and envelope mode, an error reaching error-end, fan-out, a 10 MiB payload, workers SIGKILLed while
 * messages flow (spawn and ASYA_PRELOAD) with every message accounted for, and context.cancelled() when
 * the sidecar gives up after its ASYA_RUNTIME_TIMEOUT. test/pipeline/driver.py runs them all on one broker
 * and prints one JSON line per case; the assertions are here. scripts/run-tests.mjs runs the pipeline's
 * prepare.sh first; without the pipeline folder the file is skipped.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, until } from './helpers.js';

const PIPELINE = process.env.ASYA_PIPELINE_DIR ?? path.join(ROOT, '..', 'shared', 'pipeline');
const present = fs.existsSync(path.join(PIPELINE, 'stack.py'));
const CASES = [
  'pipeline-payload',
  'pipeline-envelope',
  'error',
  'fanout',
  'large',
  'recovery-spawn',
  'recovery-preload',
  'cancel',
] as const;
type Case = (typeof CASES)[number];

interface Route {
  actors: string[];
  current: number;
  metadata?: Record<string, unknown>;
}
interface Envelope {
  id: string;
  parent_id?: string;
  route: Route;
  payload: unknown;
}
interface ErrorPayload {
  error: string;
  details?: { message?: string; type?: string; traceback?: string };
  original_payload?: unknown;
}
interface Outcome {
  case: Case;
  wall_s: number;
  error?: string;
  traceback?: string;
  exit_codes: Record<string, { sidecar: number | null; runtime: number | null }>;
  'left_in_happy-end': number;
  'left_in_error-end': number;
}
interface Flow extends Outcome {
  happy: Envelope[];
  errors: Array<Envelope & { payload: ErrorPayload }>;
}
interface Large extends Outcome {
  sent_bytes: number;
  sent_sha256: string;
  got_bytes: number;
  got_sha256: string;
  happy: Array<Omit<Envelope, 'payload'>>;
  payload_keys: string[] | null;
  errors: string[];
  seconds: number;
}
interface Served {
  pid: number;
  loaded_in: number;
  n: number;
}
interface Recovery extends Outcome {
  sent: number;
  killed: Array<{ n: number; pid: number }>;
  happy: Served[];
  happy_ids: string[];
  errors: Array<{ id: string; error: string; details: ErrorPayload['details']; original_payload: { n: number } }>;
  queue_depth: number;
  inits: number[];
}
interface Cancel extends Flow {
  mark: string;
  cancelled_after_s: number;
  sidecar_exit: number | null;
  runtime_running: boolean;
  runtime_log: Array<{ msg: string; id?: string; level: string }>;
}

/** test/pipeline/driver.py, run once for every case; its lines by case, as they come. */
class Driver {
  readonly results = new Map<string, Outcome>();
  stderr = '';
  exited: number | null | undefined;
  private readonly child: ChildProcess;
  readonly closed: Promise<void>;

  constructor() {
    this.child = spawn(
      'python3',
      [path.join(ROOT, 'test', 'pipeline', 'driver.py'), '--pipeline', PIPELINE, '--node', process.execPath, ...CASES],
      { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let pending = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) {
        const outcome = JSON.parse(line) as Outcome;
        this.results.set(outcome.case, outcome);
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.closed = new Promise((resolve) =>
      this.child.on('close', (code) => {
        this.exited = code;
        resolve();
      }),
    );
  }

  /** The case's line (waiting for it), failing with the driver's own words if it failed or never came. */
  async outcome<T extends Outcome>(name: Case): Promise<T> {
    const got = await until(
      `the driver's ${name} line`,
      () => {
        const hit = this.results.get(name);
        if (hit) return hit;
        if (this.exited !== undefined)
          throw new Error(`the driver exited (${this.exited}) without a ${name} line:\n${this.stderr.slice(-4000)}`);
        return null;
      },
      300_000,
    );
    assert.equal(got.error, undefined, `${name}: ${got.error}\n${got.traceback}\n${this.stderr.slice(-4000)}`);
    for (const [actor, codes] of Object.entries(got.exit_codes))
      if (name !== 'cancel') assert.deepEqual(codes, { sidecar: 0, runtime: 0 }, `${actor}'s exit codes`);
    assert.equal(got['left_in_happy-end'], 0, 'nothing more in happy-end');
    assert.equal(got['left_in_error-end'], 0, 'nothing more in error-end');
    return got as T;
  }

  async stop(): Promise<void> {
    if (this.exited === undefined) this.child.kill('SIGTERM'); // stack.py stops everything it started
    await this.closed;
  }
}

const ROUTE = ['preprocessor', 'classifier', 'translator'];
/** What the seeds' pipeline makes of the three texts the driver sends (examples/pipeline). */
const TRANSLATED = [
  {
    text: 'Hello World',
    cleaned_text: 'hello world',
    word_count: 2,
    category: 'greeting',
    confidence: 0.95,
    translation: 'Hola Mundo',
  },
  {
    text: '  Goodbye my friend ',
    cleaned_text: 'goodbye my friend',
    word_count: 3,
    category: 'farewell',
    confidence: 0.95,
    translation: 'Adiós my amigo',
  },
  {
    text: 'The cat sat',
    cleaned_text: 'the cat sat',
    word_count: 3,
    category: 'other',
    confidence: 0.5,
    translation: 'The cat sat',
  },
];
const VICTIMS = [40, 100, 160];

/** Every message accounted for: the victims in error-end as worker_crashed, every other one in happy-end once. */
function accounted(r: Recovery): void {
  assert.equal(r.sent, 200);
  assert.deepEqual(
    r.killed.map((k) => k.n),
    VICTIMS,
  );
  assert.equal(r.happy.length + r.errors.length, r.sent, 'happy-end + error-end = sent');
  assert.deepEqual(
    r.errors.map((e) => [e.id, e.error, e.details?.type, e.original_payload.n]),
    VICTIMS.map((n) => [`m-${n}`, 'worker_crashed', 'WorkerCrashed', n]),
  );
  for (const e of r.errors) assert.match(e.details?.message ?? '', /killed by SIGKILL/);
  const expected = Array.from({ length: r.sent }, (_, n) => n).filter((n) => !VICTIMS.includes(n));
  assert.deepEqual(
    r.happy.map((p) => p.n),
    expected,
    'every other message in happy-end once, in order',
  );
  assert.deepEqual(
    r.happy_ids,
    expected.map((n) => `m-${n}`),
  );
  for (const { n, pid } of r.killed)
    assert.deepEqual(
      r.happy.filter((p) => p.n > n && p.pid === pid).map((p) => p.n),
      [],
      `no answer from ${pid} after it was killed`,
    );
  assert.equal(r.queue_depth, 0, 'nothing left in the actor queue');
}

describe('through the real Go sidecar and RabbitMQ', {
  skip: present ? false : `no pipeline at ${PIPELINE} (../shared/pipeline, or set ASYA_PIPELINE_DIR)`,
}, () => {
  let driver: Driver;
  before(() => {
    driver = new Driver();
  });
  after(async () => {
    await driver.stop();
  });

  it('the seeds pipeline in payload mode: preprocessor, classifier, translator, exact payloads at happy-end', async () => {
    const r = await driver.outcome<Flow>('pipeline-payload');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.happy,
      TRANSLATED.map((payload, i) => ({ id: `text-${i}`, route: { actors: ROUTE, current: 3 }, payload })),
    );
  });

  it('the same pipeline in envelope mode: handlers move route.current, route.metadata arrives intact', async () => {
    const r = await driver.outcome<Flow>('pipeline-envelope');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.happy,
      TRANSLATED.map((payload, i) => ({
        id: `text-${i}`,
        route: { actors: ROUTE, current: 3, metadata: { steps: ROUTE } },
        payload,
      })),
    );
  });

  it('a handler that raises: processing_error with its message, type and traceback in error-end', async () => {
    const r = await driver.outcome<Flow>('error');
    assert.deepEqual(r.happy, []);
    assert.equal(r.errors.length, 1);
    const e = r.errors[0]!;
    const traceback = e.payload.details?.traceback ?? '';
    assert.match(traceback, /^Traceback \(most recent call last\):\n/);
    assert.match(traceback, /raise ValueError\("Invalid input"\)\nValueError: Invalid input\n$/);
    assert.deepEqual(e, {
      id: 'err-1',
      route: { actors: ['preprocessor', 'fails', 'translator'], current: 1 },
      payload: {
        error: 'processing_error',
        details: { message: 'Invalid input', type: 'ValueError', traceback },
        original_payload: { text: 'Hello World', cleaned_text: 'hello world', word_count: 2 },
      },
    });
  });

  it('fan-out: a generator yields 5 items, each an envelope through the next actor to happy-end', async () => {
    const r = await driver.outcome<Flow>('fanout');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.happy,
      [0, 1, 2, 3, 4].map((i) => ({
        id: i === 0 ? 'fan' : `fan-${i}`,
        route: { actors: ['split', 'enrich'], current: 2 },
        payload: { i, of: 5, seen: true },
      })),
    );
  });

  it('a 10 MiB payload (escapes, multi-byte characters) arrives at happy-end byte for byte', async () => {
    const r = await driver.outcome<Large>('large');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.happy, [{ id: 'big', route: { actors: ['echo'], current: 1 } }]);
    assert.deepEqual(r.payload_keys, ['blob']);
    assert.equal(r.sent_bytes, 10 * 2 ** 20);
    assert.equal(r.got_bytes, r.sent_bytes);
    assert.equal(r.got_sha256, r.sent_sha256);
  });

  it('recovery, spawn mode: the worker SIGKILLed three times while 200 messages flow; every one accounted for', async () => {
    const r = await driver.outcome<Recovery>('recovery-spawn');
    accounted(r);
    assert.equal(r.inits.length, 4, `one load, then one per replacement: ${r.inits}`);
    assert.deepEqual(
      r.killed.map((k) => k.pid),
      r.inits.slice(0, 3),
      'each victim was served by the worker loaded before it',
    );
    for (const p of r.happy) assert.equal(p.loaded_in, p.pid, 'a spawned worker serves what it loaded');
  });

  it('recovery, ASYA_PRELOAD=true: forked workers SIGKILLed while 200 messages flow; one load, every message accounted for', async () => {
    const r = await driver.outcome<Recovery>('recovery-preload');
    accounted(r);
    assert.equal(r.inits.length, 1, `the model is loaded once, in the template: ${r.inits}`);
    const template = r.inits[0];
    for (const p of r.happy) {
      assert.equal(p.loaded_in, template);
      assert.notEqual(p.pid, template, 'served by a fork, not by the template');
    }
    assert.ok(!r.killed.some((k) => k.pid === template), 'the victims were forks');
  });

  it('context.cancelled() turns true when the sidecar gives up after its ASYA_RUNTIME_TIMEOUT (2s)', async () => {
    const r = await driver.outcome<Cancel>('cancel');
    assert.deepEqual(r.happy, []);
    assert.equal(r.errors.length, 1);
    const e = r.errors[0]!;
    assert.deepEqual(e, {
      id: 'slow',
      route: { actors: ['watcher'], current: 0 },
      payload: { error: 'Runtime timeout exceeded after 2s', original_payload: { mark: r.mark } },
    });
    assert.ok(
      r.cancelled_after_s >= 2 && r.cancelled_after_s < 3,
      `the handler saw cancelled() ${r.cancelled_after_s} s after the message was sent`,
    );
    assert.equal(r.sidecar_exit, 1, 'the sidecar exits after a runtime timeout (upstream: "crashing pod to recover")');
    assert.equal(r.runtime_running, true, 'the runtime outlives its sidecar');
    assert.equal(r.exit_codes.watcher?.runtime, 0);
    const lines = r.runtime_log.filter((l) => l.id === 'slow').map((l) => l.msg);
    assert.ok(lines.includes('the client closed its connection: cancelling the call'), lines.join('\n'));
    assert.ok(lines.includes('the client left before the answer: it was dropped'), lines.join('\n'));
  });
});
