/**
 * Back-pressure on reading requests: the bytes of requests the runtime holds (still arriving, or
 * complete and waiting for their answer) are bounded by pausing the reads of newer connections,
 * not by buffering whatever clients send.
 *
 * Why: 40 clients sending 10 MB each at once made the supervisor read all 400 MB concurrently (peak
 * RSS 744 MiB) and, since glibc cannot return a fragmented heap, keep ~310 MiB of it for good after
 * the burst; 80 clients, twice that. Paused clients wait in the kernel (their writes block), their
 * read timeouts suspended, and are read on in arrival order as answers free their room, so the peak
 * no longer grows with the burst. The oldest connection still arriving always reads on: a request
 * larger than the room still completes, and nothing can wait on itself.
 */
export interface Reader {
  pause(): void;
  resume(): void;
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

  get bytes(): number {
    return this.total;
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
    this.balance();
  }

  /** The request was answered, refused or abandoned: its bytes are free. */
  release(reader: Reader): void {
    const bytes = this.held.get(reader) ?? 0;
    this.total -= bytes;
    if (this.done.delete(reader)) this.complete -= bytes;
    this.held.delete(reader);
    this.receiving.delete(reader);
    this.paused.delete(reader);
    this.balance();
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
    // With no complete request held, nothing is on its way to free room: the oldest request still
    // arriving reads on (over the room or not), or requests paused half-way would wait for each other.
    // Complete requests free their room when answered, so while there are some, everyone waits.
    const over = this.total > this.room;
    let oldest = this.complete === 0;
    for (const reader of this.receiving) {
      if (oldest) {
        oldest = false;
        if (this.paused.delete(reader)) reader.resume();
        continue;
      }
      if (!over) return;
      if (!this.paused.has(reader)) {
        this.paused.add(reader);
        reader.pause();
      }
    }
  }
}
