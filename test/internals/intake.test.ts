/**
 * The ledger of the bytes connections hold (src/socket/intake.ts), driven by generated sequences of
 * arrivals, chunks, completions, answers and closes, with sizes around its room and limit. After every
 * step its rule is checked against a model of the readers: the total, who is paused, who was refused,
 * and that something can always move (nothing waits on itself).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Intake, type Reader } from '../../src/socket/intake.js';

const ROOM = 1000;

class ModelReader implements Reader {
  bytes = 0;
  state: 'arriving' | 'complete' | 'gone' = 'arriving';
  paused = false;
  refusedWhy: string | null = null;
  constructor(
    readonly id: number,
    private readonly onRefuse: (r: ModelReader) => void,
    private readonly onResume: (r: ModelReader) => void = () => undefined,
  ) {}
  pause(): void {
    assert.ok(!this.paused, `reader ${this.id} paused twice`);
    this.paused = true;
  }
  resume(): void {
    assert.notEqual(this.state, 'gone', `reader ${this.id} resumed after it was gone`);
    assert.ok(this.paused, `reader ${this.id} resumed while not paused`);
    this.onResume(this);
    this.paused = false;
  }
  refuse(why: string): void {
    this.onRefuse(this);
    this.refusedWhy = why;
    this.state = 'gone';
    this.paused = false; // answered and closed: whether its socket was paused no longer matters
  }
}

type Step =
  | { op: 'arrive'; bytes: number }
  | { op: 'chunk'; who: number; bytes: number }
  | { op: 'complete'; who: number }
  | { op: 'answer'; who: number }
  | { op: 'close'; who: number };

/** Sizes where the rule changes: nothing, a little, half the room, the room, the limit, beyond. */
const size = fc.oneof(
  fc.constantFrom(0, 1, ROOM / 2, ROOM / 2 + 1, ROOM, ROOM + 1, 2 * ROOM, 2 * ROOM + 1),
  fc.integer({ min: 0, max: 3 * ROOM }),
  fc.integer({ min: 0, max: 100 }),
);
const who = fc.nat({ max: 40 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('arrive' as const), bytes: size }),
  fc.record({ op: fc.constant('chunk' as const), who, bytes: size }),
  fc.record({ op: fc.constant('complete' as const), who }),
  fc.record({ op: fc.constant('answer' as const), who }),
  fc.record({ op: fc.constant('close' as const), who }),
);

export function run(steps: Step[]): void {
  const intake = new Intake(ROOM);
  const readers: ModelReader[] = [];
  const live = () => readers.filter((r) => r.state !== 'gone');
  const arriving = () => readers.filter((r) => r.state === 'arriving');
  /** Complete requests holding bytes: their answers free room (an empty one frees nothing). */
  const completeHeld = () => readers.some((r) => r.state === 'complete' && r.bytes > 0);
  /** Who the rule exempts: the oldest still arriving, while no complete request is held. */
  const exempt = () => (completeHeld() ? undefined : arriving()[0]);
  const onRefuse = (r: ModelReader) => {
    assert.equal(r.state, 'arriving', `reader ${r.id} refused while ${r.state}`);
    // Never the oldest still arriving, complete requests held or not (a request larger than the room).
    assert.notEqual(r, arriving()[0], `reader ${r.id}, the oldest still arriving, was refused`);
  };
  // Read on only with half the room free (no flutter at the edge), or as the one the rule exempts.
  const onResume = (r: ModelReader) => {
    const exempted = !readers.some((x) => x.state === 'complete' && x.bytes > 0) && arriving()[0] === r;
    assert.ok(intake.bytes <= ROOM / 2 || exempted, `reader ${r.id} resumed with ${intake.bytes} of ${ROOM} held`);
  };
  const pick = (n: number, pool: ModelReader[]) => (pool.length === 0 ? undefined : pool[n % pool.length]);

  for (const s of steps) {
    if (s.op === 'arrive') {
      const r = new ModelReader(readers.length, onRefuse, onResume);
      readers.push(r);
      r.bytes = s.bytes;
      intake.hold(r, r.bytes, true);
    } else if (s.op === 'chunk') {
      // Only a reader that reads gets bytes: not a paused one.
      const r = pick(
        s.who,
        arriving().filter((x) => !x.paused),
      );
      if (!r) continue;
      r.bytes += s.bytes;
      intake.hold(r, r.bytes, true);
    } else if (s.op === 'complete') {
      const r = pick(
        s.who,
        arriving().filter((x) => !x.paused),
      );
      if (!r) continue;
      r.state = 'complete';
      intake.hold(r, r.bytes, false);
    } else {
      const r = pick(s.who, s.op === 'answer' ? readers.filter((x) => x.state === 'complete') : live());
      if (!r) continue;
      r.state = 'gone';
      r.paused = false; // answered or closed: its socket is done with
      intake.release(r);
    }
    check();
  }

  function check(): void {
    const held = live().reduce((sum, r) => sum + r.bytes, 0);
    assert.equal(intake.bytes, held, 'the ledger is the sum of what live readers hold');
    const first = exempt();
    if (first) assert.ok(!first.paused, `reader ${first.id}, the oldest still arriving, is paused`);
    for (const r of readers) {
      if (r.paused) assert.notEqual(r.state, 'gone', `reader ${r.id} left paused after it was gone`);
    }
    if (held <= ROOM / 2) {
      for (const r of arriving()) assert.ok(!r.paused, `reader ${r.id} paused with ${held} of ${ROOM} held`);
    }
    if (held > ROOM) {
      for (const r of arriving())
        if (r !== first) assert.ok(r.paused, `reader ${r.id} reads on with ${held} of ${ROOM} held`);
    }
    if (held > intake.limit) {
      const others = arriving().slice(1);
      assert.deepEqual(
        others.map((r) => r.id),
        [],
        `over the limit (${held} > ${intake.limit}), newer arrivals were not refused`,
      );
    }
    // Something can always move: a reader that reads, or a complete request whose answer frees room.
    const stuck = arriving().length > 0 && arriving().every((r) => r.paused) && !completeHeld();
    assert.ok(!stuck, 'every reader is paused and no answer is coming: they wait on each other');
  }
}

describe('the intake: one ledger, one rule', () => {
  it('generated arrivals, chunks, completions, answers and closes, sizes around the room and the limit', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => run(steps)),
      { numRuns: 400 },
    );
  });

  it('over twice the room, the newest still arriving are refused with a message naming the bound', () => {
    const refused: string[] = [];
    const reader = (id: number): Reader => ({
      pause: () => undefined,
      resume: () => undefined,
      refuse: (why) => refused.push(`${id}: ${why}`),
    });
    const intake = new Intake(ROOM);
    const readers = Array.from({ length: 5 }, (_, i) => reader(i));
    // Each read a chunk before anyone could be paused: 5 x 500 = 2500 > 2000.
    for (const r of readers) intake.hold(r, 500, true);
    assert.equal(refused.length, 1);
    assert.match(
      refused[0]!,
      /^4: refused: requests held 2500 bytes across 5 connections, over the runtime's bound of 2000/,
    );
    assert.equal(intake.bytes, 2000);
  });
});
