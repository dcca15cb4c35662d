/**
 * The channel between the supervisor and the shim: 4-byte length + MessagePack per message over the
 * shim's stdin/stdout. What travels on it (the messages and the outcomes they mean), how the hot-path
 * call is encoded without copying the payload, and how a frame that no shim writes is recognised. The
 * process around it is worker.ts.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { EnvelopeOutput } from '../envelope/envelope.js';
import type { MessageContext } from '../envelope/trace.js';
import { frameChunks, JOIN_FRAME_BYTES, lengthPrefix, totalLength } from '../socket/framing.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

// No real shim message comes near 1 GiB (the largest request is ASYA_MAX_MESSAGE_SIZE, 64 MiB by default,
// and an answer must fit the sidecar's 4-byte frame); a length beyond it is a corrupted channel, found at
// once rather than by waiting for bytes that never come.
export const CHANNEL_FRAME_LIMIT = 2 ** 30;
/**
 * Every shim message is a msgpack map (fixmap, under 16 keys) whose first key is "t". Checking those
 * three bytes as soon as they arrive catches a handler writing into the channel's descriptors without
 * any guess about sizes: a bogus length prefix is followed by bytes that are not these.
 */
export const SHIM_MESSAGE_HEAD = {
  bytes: 3,
  test: (head: Buffer) =>
    head.length === 3 && head[0]! > 0x80 && head[0]! <= 0x8f && head[1] === 0xa1 && head[2] === 0x74,
};

/** Any message but the hot-path call (init, and the like), length-prefixed. */
export function encodeMessage(message: Record<string, unknown>): Buffer[] {
  const body = packr.pack(message);
  return [lengthPrefix(body.length), body];
}

export function decodeMessage(frame: Buffer): ShimMessage {
  return decodeOk(frame) ?? (unpackr.unpack(frame) as ShimMessage);
}

/** `{"t": "ok", "o": [` as the shim writes it (pack_ok). */
const OK_HEAD = Buffer.from([0x82, 0xa1, 0x74, 0xa2, 0x6f, 0x6b, 0xa1, 0x6f]);

/**
 * The common reply, `{"t": "ok", "o": [<bin>, ...]}`, read at fixed offsets: the results are views of
 * the frame, not copies. Null for anything else (or anything malformed), which msgpackr then reads.
 */
export function decodeOk(frame: Buffer): { t: 'ok'; o: Buffer[] } | null {
  if (frame.length < 9 || OK_HEAD.compare(frame, 0, 8) !== 0) return null;
  let pos = 9;
  let count = frame.readUInt8(8);
  if (count >= 0x90 && count <= 0x9f) count &= 0x0f;
  else if (count === 0xdc && frame.length >= 11) [count, pos] = [frame.readUInt16BE(9), 11];
  else if (count === 0xdd && frame.length >= 13) [count, pos] = [frame.readUInt32BE(9), 13];
  else return null;
  const items: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const tag = frame[pos];
    const width = tag === 0xc4 ? 1 : tag === 0xc5 ? 2 : tag === 0xc6 ? 4 : 0;
    if (width === 0 || pos + 1 + width > frame.length) return null;
    const size = frame.readUIntBE(pos + 1, width);
    const start = pos + 1 + width;
    if (start + size > frame.length) return null;
    items.push(frame.subarray(start, start + size));
    pos = start + size;
  }
  return pos === frame.length ? { t: 'ok', o: items } : null;
}

export interface ReadyInfo {
  kind: 'function' | 'class';
  /** What was found: 'function', 'async method', 'generator function', 'async generator method', 'callable object', ... */
  callable: string;
  /** The class handler has a close() hook. */
  close: boolean;
  /** The shim can be interrupted inside Python (its reaper forwards the request). */
  interruptible: boolean;
  python: string;
  executable: string;
  pid: number;
  load_ms: number;
  codec?: string;
  /** The absolute path of the handler's module file, when it has one (`asya-runtime call --watch` watches its directory). */
  module_file?: string | null;
  /** The import path entry the module was found in: its file's directory above the module's packages. */
  module_root?: string | null;
  /** When the shim's phases ended, Unix time in seconds: its code started, waiting for init, init read, handler loaded. */
  startup?: Record<string, number>;
  /** A template (ASYA_PRELOAD): the threads alive in it, which its forks do not have. */
  threads?: string[];
  /** Forked from the template (ASYA_PRELOAD): `load_ms` is then the fork's time, not a load. */
  forked?: boolean;
  /** The fork's time, where the runtime reports the template's load time as `load_ms` (`asya-runtime call`). */
  fork_ms?: number;
  /** The handler has a parameter named `context`: calls carry what it holds (id, route, headers, deadline). */
  context?: boolean;
}

export interface CallRequest {
  /** Raw JSON bytes of the payload. */
  payload: Buffer;
  /** Raw JSON bytes of the rest of the envelope, when the handler is to see it. */
  meta?: Buffer;
  /** The payload holds integers beyond 64 bits: the shim must decode it with the stdlib (orjson would round them). */
  wideIntegers?: boolean;
  /** The message, named on every line the handler writes while (and after) handling it. */
  context?: MessageContext;
  /** For a handler's `context`: the envelope without its payload, when `meta` is not sent anyway. */
  contextMeta?: Buffer;
  /** For a handler's `context`: the envelope's deadline, seconds since the epoch. */
  deadline?: number;
  /** The handler's breakpoint() opened (true) or closed (false) the debugger on the terminal. Not sent. */
  onDebugger?: (open: boolean) => void;
}

export type CallOutcome =
  | { kind: 'payloads'; payloads: Buffer[] }
  | { kind: 'envelopes'; outputs: EnvelopeOutput[] }
  /** The handler raised, or its result could not be encoded. */
  | { kind: 'raised'; type: string; message: string; traceback: string }
  /** The handler returned something JSON cannot hold; the message says what and where. */
  | { kind: 'unencodable'; type: string; message: string; traceback: string }
  /** The payload (or envelope) bytes are not valid JSON for Python. */
  /** `field`: 'payload', or 'envelope' when the rest of the envelope could not be read (nesting Python refuses). */
  | { kind: 'bad_input'; type: string; message: string; field: string }
  /** The time limit interrupted the call; it ended raising `type`, or returned anyway (result discarded). */
  | { kind: 'timed_out'; type: string; message: string; traceback: string; returned: boolean };

export interface ErrorFields {
  type: string;
  message: string;
  traceback: string;
}

export type ShimMessage =
  | ({ t: 'ready' } & ReadyInfo)
  | ({ t: 'fatal'; python?: string; executable?: string } & ErrorFields)
  | ({ t: 'err' } & ErrorFields)
  | ({ t: 'bad'; field?: string } & ErrorFields)
  | ({ t: 'timeout'; returned: boolean } & ErrorFields)
  | ({ t: 'closed'; ms: number } & Partial<ErrorFields>)
  | ({ t: 'enc' } & ErrorFields)
  | { t: 'ok'; o: Buffer[] }
  | { t: 'env'; o: EnvelopeOutput[] }
  /** During a call, not its reply: the debugger on the terminal opened or closed (the time limit waits meanwhile). */
  | { t: 'debugger'; open: boolean };

/** A handler's metric update (context.metrics): kind, name, value, labels as [name, value] pairs. */
export type MetricUpdate = ['counter' | 'gauge' | 'histogram', string, number, Array<[string, string]>];

function binHeader(key: string, length: number): Buffer {
  // fixstr key (1 char) + bin32 length
  const head = Buffer.allocUnsafe(7);
  head[0] = 0xa1;
  head[1] = key.charCodeAt(0);
  head[2] = 0xc6;
  head.writeUInt32BE(length, 3);
  return head;
}

/**
 * The hot-path message, `{t: "call", p: <payload bytes>, m?: <meta bytes>, w?: true}`, written as msgpack
 * by hand: msgpackr copies a 10 MB buffer into its own (measured ~27 ms); these chunks reference the
 * request frame.
 */
export function encodeCall({ payload, meta, wideIntegers, contextMeta, deadline }: CallRequest): Buffer[] {
  const size = 2 + (meta ? 1 : 0) + (wideIntegers ? 1 : 0) + (contextMeta ? 1 : 0) + (deadline !== undefined ? 1 : 0);
  const parts = [
    Buffer.from([0x80 | size, 0xa1, 0x74, 0xa4, 0x63, 0x61, 0x6c, 0x6c]),
    binHeader('p', payload.length),
    payload,
  ];
  if (meta) parts.push(binHeader('m', meta.length), meta);
  if (wideIntegers) parts.push(WIDE_INTEGERS);
  if (contextMeta) parts.push(binHeader('e', contextMeta.length), contextMeta);
  if (deadline !== undefined) {
    const d = Buffer.allocUnsafe(11);
    d[0] = 0xa1; // "d": float64
    d[1] = 0x64;
    d[2] = 0xcb;
    d.writeDoubleBE(deadline, 3);
    parts.push(d);
  }
  const length = totalLength(parts);
  // A small call is one buffer, one write (the answer's rule); a large one keeps its payload and meta as
  // they are, the prefix and headers joined in front of them.
  if (4 + length <= JOIN_FRAME_BYTES) return frameChunks(parts);
  return [Buffer.concat([lengthPrefix(length), parts[0]!, parts[1]!]), ...parts.slice(2)];
}

/** `"w": true` */
const WIDE_INTEGERS = Buffer.from([0xa1, 0x77, 0xc3]);

export function toOutcome(msg: ShimMessage): CallOutcome {
  switch (msg.t) {
    case 'ok':
      return { kind: 'payloads', payloads: msg.o };
    case 'env':
      return { kind: 'envelopes', outputs: msg.o.map(([m, p]) => [m, p ?? null]) };
    case 'err':
      return { kind: 'raised', type: msg.type, message: msg.message, traceback: msg.traceback };
    case 'bad':
      return { kind: 'bad_input', type: msg.type, message: msg.message, field: msg.field ?? 'payload' };
    case 'timeout':
      return {
        kind: 'timed_out',
        type: msg.type,
        message: msg.message,
        traceback: msg.traceback,
        returned: msg.returned,
      };
    case 'enc':
      return { kind: 'unencodable', type: msg.type, message: msg.message, traceback: msg.traceback };
    default:
      return {
        kind: 'raised',
        type: 'ProtocolError',
        message: `unexpected reply '${msg.t}' from the shim`,
        traceback: '',
      };
  }
}
