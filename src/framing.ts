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
 * a larger one is assembled into a buffer allocated once from its length. The length is checked
 * against the limit before anything is allocated.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;

  constructor(private readonly limit: number) {}

  /** Bytes received of the frame in progress, and its announced length (null before the header). */
  progress(): { received: number; expected: number | null } {
    return this.body === null
      ? { received: this.headerFill, expected: null }
      : { received: 4 + this.bodyFill, expected: 4 + this.body.length };
  }

  /** Feed bytes; `emit` is called for every completed frame. Throws FrameTooLarge. */
  push(chunk: Buffer, emit: (frame: Buffer) => void): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.body === null) {
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
        this.body = Buffer.allocUnsafe(size);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - off);
      chunk.copy(this.body, this.bodyFill, off, off + take);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === this.body.length) {
        const frame = this.body;
        this.body = null;
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
