/**
 * How many request bytes the supervisor holds at once: a burst of large messages is read as fast as
 * the handler can use it, not all at once.
 *
 * Every connection is read concurrently (a slow client delays nobody), so 40 clients x 10 MB used to
 * put 400 MB of frames in memory within a second, although the handler takes them one at a time. That
 * memory comes from glibc's main heap (heap.ts raised its mmap threshold to 30 MiB, so 10 MB blocks are
 * not mmapped), and glibc can only give back the top of that heap: once the burst is freed, a few small
 * blocks still alive high up keep the rest. Measured (scripts/burst-memory.mjs): 300-350 MiB held for
 * good after such a burst even with an idle collection (idle-gc.ts), 67 MiB at start. Node cannot call
 * malloc_trim (which gets it all back: 72 MiB, tried with gdb), so the fix is not to grow the heap.
 *
 * Bytes count from the first byte of a request until its answer is written (or the client is gone).
 * While they exceed the budget, connections still receiving are paused (the kernel holds the rest and
 * the client waits in write(), as it would wait for its answer anyway) and their read timeout is
 * suspended (the delay is ours). Progress is guaranteed: answers release bytes; and when what is held
 * is only partial requests (nothing to answer yet), the oldest connection keeps reading.
 */

export interface Reader {
  pause(): void;
  resume(): void;
}

/** Request bytes held before reading pauses: a few 10 MB messages queued, dozens of 1 MB ones. */
export const READ_BUDGET_BYTES = 32 * 1024 * 1024;

export class ReadBudget {
  /** Bytes of requests still arriving. */
  private partial = 0;
  /** Bytes of complete requests waiting for (or in) the handler. */
  private complete = 0;
  /** Connections still receiving their request, oldest first, and whether each is paused. */
  private readonly readers = new Map<Reader, boolean>();

  constructor(private readonly limit = READ_BUDGET_BYTES) {}

  get held(): number {
    return this.partial + this.complete;
  }

  /** A new connection: it reads unless the budget says otherwise. */
  join(reader: Reader): void {
    this.readers.set(reader, false);
    this.rebalance();
  }

  /** `bytes` of a request arrived. */
  received(bytes: number): void {
    this.partial += bytes;
    if (this.held > this.limit) this.rebalance();
  }

  /** The reader's request is complete (`bytes` now wait for the handler), or it stopped receiving (0). */
  completed(reader: Reader, bytes: number, partialBytes: number): void {
    this.readers.delete(reader);
    this.partial -= partialBytes;
    this.complete += bytes;
    this.rebalance();
  }

  /** A complete request was answered or abandoned: its bytes are free. */
  released(bytes: number): void {
    this.complete -= bytes;
    this.rebalance();
  }

  private rebalance(): void {
    const over = this.held > this.limit;
    let oldest = true;
    for (const [reader, paused] of this.readers) {
      const read = !over || (oldest && this.complete === 0);
      oldest = false;
      if (read === !paused) continue;
      this.readers.set(reader, !read);
      if (read) reader.resume();
      else reader.pause();
    }
  }
}
