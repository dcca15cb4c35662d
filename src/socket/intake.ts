/**
 * The one ledger of the bytes connections hold for requests: still arriving, or complete and waiting
 * for their answer. One rule, in arrival order, over one room (INTAKE_BYTES):
 *
 * - Over the room, connections still arriving are paused, newest first, and read on in arrival order
 *   once half the room is free. Paused clients wait in the kernel (their writes block).
 * - Over twice the room, the newest connections still arriving are refused (`connection_error`) until
 *   the total is back within it. Pausing alone keeps the total near the room; it can only be crossed
 *   by many connections each reading a chunk at the same moment, before their pause.
 * - The oldest connection still arriving is never refused, and never paused while no complete request
 *   is held: a request larger than the room still completes, and nothing waits on itself. While
 *   complete requests are held, everyone still arriving waits: they free their room when answered.
 * - Pausing does not stop a connection's clock: a request must arrive whole within ASYA_READ_TIMEOUT of
 *   its connection, waiting included, so clients that stall in the queue are dropped together, not one
 *   read timeout after another.
 *
 * Why: 40 clients sending 10 MB each at once made the supervisor read all 400 MB concurrently (peak
 * RSS 744 MiB) and, since glibc cannot return a fragmented heap, keep ~310 MiB of it for good after the
 * burst; 80 clients, twice that. The sidecar sends one request at a time, so it never meets either.
 */
export interface Reader {
  pause(): void;
  resume(): void;
  /** Refused: answer `connection_error` with `why` and stop reading (the ledger no longer counts it). */
  refuse(why: string): void;
}

/** Room for requests held at once: a few large messages; the sidecar sends one at a time. */
export const INTAKE_BYTES = 64 * 1024 * 1024;

export class Intake {
  private total = 0;
  /** The part of `total` held by complete requests: they free their room when answered. */
  private complete = 0;
  /** Every holder's bytes; insertion order is arrival order. */
  private readonly held = new Map<Reader, number>();
  /** Holders still receiving their request, in arrival order. */
  private readonly receiving = new Set<Reader>();
  private readonly paused = new Set<Reader>();
  /** Holders whose request is complete (waiting for, or being given, its answer). */
  private readonly done = new Set<Reader>();

  constructor(readonly room: number = INTAKE_BYTES) {}

  /** Above this, the newest still arriving are refused. */
  get limit(): number {
    return 2 * this.room;
  }

  get bytes(): number {
    return this.total;
  }

  /** Whether the ledger holds `reader` and has it paused (for tests). */
  isPaused(reader: Reader): boolean {
    return this.paused.has(reader);
  }

  /** `reader` now holds `bytes`, and is (or is no longer) still receiving. */
  hold(reader: Reader, bytes: number, stillReceiving: boolean): void {
    const before = this.held.get(reader) ?? 0;
    this.total += bytes - before;
    this.held.set(reader, bytes);
    if (stillReceiving) {
      this.receiving.add(reader);
    } else {
      const wasDone = this.done.has(reader);
      this.receiving.delete(reader);
      this.done.add(reader);
      this.complete += bytes - (wasDone ? before : 0);
    }
    if (this.total > this.limit) this.refuseNewest();
    this.balance();
  }

  /** The request was answered, refused or abandoned: its bytes are free. */
  release(reader: Reader): void {
    const bytes = this.held.get(reader);
    if (bytes === undefined) return;
    this.total -= bytes;
    if (this.done.delete(reader)) this.complete -= bytes;
    this.held.delete(reader);
    this.receiving.delete(reader);
    this.paused.delete(reader);
    this.balance();
  }

  /** The oldest still arriving reads on while no complete request is held (see the header). */
  private exempt(): Reader | undefined {
    if (this.complete > 0) return undefined;
    return this.receiving.values().next().value;
  }

  private refuseNewest(): void {
    const held = this.total;
    const holders = this.held.size;
    // The oldest still arriving is never refused, complete requests held or not: one request larger
    // than the room must still complete.
    const exempt = this.receiving.values().next().value;
    const newestFirst = [...this.receiving].reverse();
    for (const reader of newestFirst) {
      if (this.total <= this.limit) break;
      if (reader === exempt) continue;
      this.release(reader);
      reader.refuse(
        `refused: requests held ${held} bytes across ${holders} connections, over the runtime's ` +
          `bound of ${this.limit} (twice its room of ${this.room}); this connection was among the newest still arriving`,
      );
    }
  }

  private balance(): void {
    if (this.paused.size > 0 && this.total <= this.room / 2) {
      // Half the room free before reading on: no pause/resume flutter at the edge.
      for (const reader of this.paused) reader.resume();
      this.paused.clear();
      return;
    }
    // Nothing paused and nothing to pause: the common case, one request at a time.
    if (this.paused.size === 0 && this.total <= this.room) return;
    const over = this.total > this.room;
    const exempt = this.exempt();
    for (const reader of this.receiving) {
      if (reader === exempt) {
        if (this.paused.delete(reader)) reader.resume();
        continue;
      }
      if (!over) continue;
      if (!this.paused.has(reader)) {
        this.paused.add(reader);
        reader.pause();
      }
    }
  }
}
