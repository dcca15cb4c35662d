/**
 * A worker without Python, for driving a supervisor or a pool by their rules alone (test/keep-loaded.test.ts,
 * test/pool.test.ts). It loads in `initMs`, answers each call with its id (after `callMs`) or hangs as
 * `FakeWorker.behaviour` says, takes `exitMs` to exit when stopped and a moment when killed (as a real
 * process does), and records what is done to it. Its delays stand for a real worker's time: tests wait on
 * what it records and on the answers, never on its clock.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { CallOutcome, DeathReason, ReadyInfo, Worker } from '../src/worker/worker.js';
import { WorkerDied } from '../src/worker/worker.js';

export interface FakeTimes {
  /** How long the handshake (loading the handler) takes; a death meanwhile fails it. Default 0. */
  initMs?: number;
  /** How long a call takes to answer, when it answers. Default 0: at once. */
  callMs?: number;
  /** How long stop() takes for the process to exit. Default 20. */
  exitMs?: number;
}

/** How long a killed fake takes to be reported dead (a real kill is not seen at once either). */
const KILL_MS = 5;

export class FakeWorker implements Worker {
  /** Every worker since the last reset(), in order: a worker's id (its fake pid) is its place here, from 1. */
  static spawned: FakeWorker[] = [];
  /** What happened to the workers, in order: spawn, interrupt, terminate, stop, exited (and what a test adds). */
  static events: string[] = [];
  /** Calls made, in order (and what a test adds, such as the answers written). */
  static order: string[] = [];
  /** What a call does: answer, or hang until interrupted ('soft': it answers timed_out) or killed ('hard'). */
  static behaviour: 'answer' | 'soft' | 'hard' = 'answer';

  /** Forget every worker and record; calls answer again. */
  static reset(): void {
    FakeWorker.spawned = [];
    FakeWorker.events = [];
    FakeWorker.order = [];
    FakeWorker.behaviour = 'answer';
  }

  readonly id = FakeWorker.spawned.push(this);
  readonly exited: Promise<WorkerDied>;
  private die!: (death: WorkerDied) => void;
  private pending: { resolve: (o: CallOutcome) => void; reject: (death: WorkerDied) => void } | null = null;

  constructor(private readonly times: FakeTimes = {}) {
    this.exited = new Promise((resolve) => (this.die = resolve));
    FakeWorker.events.push(`spawn ${this.id}`);
  }

  async handshake(): Promise<ReadyInfo> {
    const initMs = this.times.initMs ?? 0;
    if (initMs > 0) {
      // Like a real worker's handshake, it fails if the process dies while loading.
      const loading = new AbortController();
      const died = this.exited.then((death) => {
        loading.abort();
        return Promise.reject(death);
      });
      await Promise.race([delay(initMs, undefined, { signal: loading.signal }).catch(() => undefined), died]);
    }
    return {
      kind: 'class',
      callable: 'method',
      close: true,
      interruptible: true,
      python: 'fake',
      executable: 'fake',
      pid: this.id,
      load_ms: initMs,
    };
  }

  call(): Promise<CallOutcome> {
    FakeWorker.order.push(`call ${this.id}`);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      if (FakeWorker.behaviour !== 'answer') return;
      const answer: CallOutcome = { kind: 'payloads', payloads: [Buffer.from(String(this.id))] };
      const callMs = this.times.callMs ?? 0;
      if (callMs === 0) resolve(answer);
      else setTimeout(() => resolve(answer), callMs);
    });
  }

  interrupt(): void {
    FakeWorker.events.push(`interrupt ${this.id}`);
    if (FakeWorker.behaviour === 'soft')
      this.pending?.resolve({
        kind: 'timed_out',
        type: 'HandlerTimeout',
        message: 'x',
        traceback: 'tb',
        returned: false,
      });
  }

  rss(): number | null {
    return null;
  }

  async stop(): Promise<WorkerDied> {
    FakeWorker.events.push(`stop ${this.id}`);
    await delay(this.times.exitMs ?? 20);
    FakeWorker.events.push(`exited ${this.id}`);
    return this.end(new WorkerDied('stopped', 0, null, ''));
  }

  terminate(reason: DeathReason): void {
    FakeWorker.events.push(`terminate ${this.id} ${reason}`);
    setTimeout(() => this.end(new WorkerDied(reason, null, 'SIGKILL', '')), KILL_MS);
  }

  /** As the real worker does: the call in flight is rejected, then the process is gone. */
  private end(death: WorkerDied): WorkerDied {
    this.pending?.reject(death);
    this.die(death);
    return death;
  }
}
