/**
 * The memory all connections together may hold for requests that have not fully arrived.
 *
 * Each connection's buffer grows with the bytes it actually received (framing.ts), so a client
 * that claims 64 MiB and sends one byte costs one byte; but a few hundred clients that do send
 * most of a large frame, slowly, could still add up. Over the bound, the newest holders are
 * refused first: the ones that arrived earlier are likelier to be the sidecar's real requests,
 * and refusing the newest frees the most recent, least invested work.
 */
export class PendingBytes<Holder> {
  private total = 0;
  /** Insertion order is arrival order: the newest holders are at the end. */
  private readonly held = new Map<Holder, number>();

  /** What was held when the bound was last crossed, for the refusal's message. */
  overflow = { bytes: 0, holders: 0 };

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.total;
  }

  get holders(): number {
    return this.held.size;
  }

  /**
   * Record that `holder` now holds `bytes`. Returns the holders to refuse (newest first) so the
   * total fits the limit again; they are no longer counted.
   */
  set(holder: Holder, bytes: number): Holder[] {
    const before = this.held.get(holder);
    if (bytes === 0) {
      if (before !== undefined) this.release(holder);
      return [];
    }
    this.total += bytes - (before ?? 0);
    this.held.set(holder, bytes);
    if (this.total <= this.limit) return [];
    this.overflow = { bytes: this.total, holders: this.held.size };
    const newestFirst = [...this.held.keys()].reverse();
    const refused: Holder[] = [];
    for (const h of newestFirst) {
      if (this.total <= this.limit) break;
      this.release(h);
      refused.push(h);
    }
    return refused;
  }

  release(holder: Holder): void {
    const bytes = this.held.get(holder);
    if (bytes === undefined) return;
    this.total -= bytes;
    this.held.delete(holder);
  }
}

/**
 * The bound: eight largest requests' worth (512 MiB with the default ASYA_MAX_MESSAGE_SIZE of 64 MiB,
 * room for a burst of 40 x 10 MB arriving at once), at least 16 MiB for small limits.
 */
export function pendingLimit(maxMessageSize: number): number {
  return Math.max(16 * 1024 * 1024, 8 * maxMessageSize);
}
