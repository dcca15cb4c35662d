/**
 * Length-prefixed framing: a 4-byte big-endian unsigned length, then that many bytes.
 * The sidecar socket uses it (one frame each way per connection) and so does the channel
 * to the Python shim (a stream of frames).
 */

export class FrameTooLarge extends Error {
  constructor(readonly size: number, readonly limit: number) {
    super(`frame of ${size} bytes exceeds the limit of ${limit}`);
    this.name = 'FrameTooLarge';
  }
}

/**
 * Incremental decoder. A frame that arrives in one chunk is returned as a slice of it (no copy);
 * a larger one is kept as the chunks that arrived and joined once complete. Memory follows the
 * bytes received, never the length a peer claims: a client announcing 64 MiB and sending one
 * byte holds one byte. The length is checked against the limit before anything is kept.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  /** Body length of the frame in progress, or -1 before its header is complete. */
  private expected = -1;
  private parts: Buffer[] = [];
  private received = 0;

  constructor(private readonly limit: number) {}

  /** Bytes received of the frame in progress, and its announced length (null before the header). */
  progress(): { received: number; expected: number | null } {
    return this.expected < 0
      ? { received: this.headerFill, expected: null }
      : { received: 4 + this.received, expected: 4 + this.expected };
  }

  /** Bytes held for the frame in progress. */
  get held(): number {
    return this.headerFill + this.received;
  }

  /** Feed bytes; `emit` is called for every completed frame. Throws FrameTooLarge. */
  push(chunk: Buffer, emit: (frame: Buffer) => void): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.expected < 0) {
        let size: number;
        if (this.headerFill === 0 && chunk.length - off >= 4) {
          size = chunk.readUInt32BE(off);
          off += 4;
        } else {
          const take = Math.min(4 - this.headerFill, chunk.length - off);
          chunk.copy(this.header, this.headerFill, off, off + take);
          this.headerFill += take;
          off += take;
          if (this.headerFill < 4) return;
          this.headerFill = 0;
          size = this.header.readUInt32BE(0);
        }
        if (size > this.limit) throw new FrameTooLarge(size, this.limit);
        if (chunk.length - off >= size) {
          emit(chunk.subarray(off, off + size));
          off += size;
          continue;
        }
        this.expected = size;
      }
      const take = Math.min(this.expected - this.received, chunk.length - off);
      this.parts.push(chunk.subarray(off, off + take));
      this.received += take;
      off += take;
      if (this.received === this.expected) {
        const frame = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.received);
        this.parts = [];
        this.received = 0;
        this.expected = -1;
        emit(frame);
      }
    }
  }
}

export function lengthPrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32BE(length, 0);
  return prefix;
}
