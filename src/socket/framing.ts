/**
 * Length-prefixed framing: a 4-byte big-endian unsigned length, then that many bytes.
 * The sidecar socket uses it (one frame each way per connection) and so does the channel
 * to the Python shim (a stream of frames).
 */
import type { WireError } from '../errors.js';

export class FrameTooLarge extends Error {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`frame of ${size} bytes exceeds the limit of ${limit}`);
    this.name = 'FrameTooLarge';
  }
}

/** A frame whose first bytes fail the decoder's `expect` test: the stream is not what it should be. */
export class FrameCorrupt extends Error {
  constructor(
    readonly size: number,
    readonly head: Buffer,
  ) {
    super(
      `a frame announcing ${size} bytes starts with ${head.length ? head.toString('hex').replace(/../g, '$& ').trim() : 'nothing'}`,
    );
    this.name = 'FrameCorrupt';
  }
}

export interface FrameDecoderOptions {
  /** A test of every frame's first `bytes` bytes, run as soon as they arrive; failing it throws FrameCorrupt. */
  expect?: { bytes: number; test: (head: Buffer) => boolean };
}

/**
 * Incremental decoder. A frame that arrives in one chunk is returned as a slice of it (no copy);
 * a larger one is kept as the chunks that arrived and joined once complete. Memory follows the
 * bytes received, never the length a peer claims: a client announcing 64 MiB and sending one
 * byte holds one byte. The length is checked against the limit before anything is kept.
 */
export class FrameDecoder {
  /** A header split across chunks is gathered here; allocated only then (most frames arrive whole). */
  private header: Buffer | null = null;
  private headerFill = 0;
  /** Body length of the frame in progress, or -1 before its header is complete. */
  private expected = -1;
  private parts: Buffer[] = [];
  private received = 0;

  /** Whether the frame in progress passed `expect` (or there is none). */
  private checked = false;
  private readonly expect: FrameDecoderOptions['expect'];

  constructor(
    private readonly limit: number,
    options: FrameDecoderOptions = {},
  ) {
    this.expect = options.expect;
  }

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

  /** Feed bytes; `emit` is called for every completed frame. Throws FrameTooLarge or FrameCorrupt. */
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
          this.header ??= Buffer.alloc(4);
          chunk.copy(this.header, this.headerFill, off, off + take);
          this.headerFill += take;
          off += take;
          if (this.headerFill < 4) return;
          this.headerFill = 0;
          size = this.header.readUInt32BE(0);
        }
        if (size > this.limit) throw new FrameTooLarge(size, this.limit);
        if (chunk.length - off >= size) {
          const frame = chunk.subarray(off, off + size);
          this.check(size, frame);
          emit(frame);
          off += size;
          continue;
        }
        this.expected = size;
        this.checked = this.expect === undefined;
      }
      const take = Math.min(this.expected - this.received, chunk.length - off);
      this.parts.push(chunk.subarray(off, off + take));
      this.received += take;
      off += take;
      if (!this.checked && this.received >= Math.min(this.expect!.bytes, this.expected)) {
        this.checked = true;
        this.check(this.expected, Buffer.concat(this.parts));
      }
      if (this.received === this.expected) {
        const frame = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.received);
        this.parts = [];
        this.received = 0;
        this.expected = -1;
        emit(frame);
      }
    }
  }

  private check(size: number, body: Buffer): void {
    if (!this.expect) return;
    const head = body.subarray(0, this.expect.bytes);
    if (!this.expect.test(head)) throw new FrameCorrupt(size, head);
  }
}

export function lengthPrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32BE(length, 0);
  return prefix;
}

/** Frames up to this size are joined into one buffer; larger ones keep their chunks. */
export const JOIN_FRAME_BYTES = 64 * 1024;

/**
 * A response body (the array, as the chunks it was built from) framed with its 4-byte big-endian length.
 * A small frame is one buffer, copied once from the chunks: one write, and a copy of a few KB costs less
 * than writev's bookkeeping in Node's streams. A large one is the length and the chunks as they are.
 */
export function frameChunks(body: readonly Buffer[]): Buffer[] {
  const length = totalLength(body);
  if (length + 4 > JOIN_FRAME_BYTES) return [lengthPrefix(length), ...body];
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  let at = 4;
  for (const chunk of body) at += chunk.copy(frame, at);
  return [frame];
}

/** A wire error as a framed one-element response array. */
export function errorResponse(err: WireError): Buffer[] {
  return frameChunks([Buffer.from(JSON.stringify(err.toJSON()))]);
}

/** The bytes a list of chunks holds (a frame written as several). */
export function totalLength(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const chunk of chunks) n += chunk.length;
  return n;
}
