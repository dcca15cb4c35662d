/**
 * The CLI's messages and answers as JSON text, never as JavaScript values: JSON.parse would round
 * 9007199254740993, turn `1.0` and `-0.0` into `1` and `0`, and keep only the last of two equal
 * keys, so the handler would not see what the user wrote, nor the user what the handler returned.
 * A message is the span of the user's bytes that holds one JSON value; a payload is written into
 * its envelope as those bytes; an answer's payloads are spans of the answer.
 */
import { isUtf8 } from 'node:buffer';
import {
  JsonScanError,
  lastMember,
  MAX_NESTING,
  type Span,
  scanObject,
  skip,
  skipSpace,
  validate,
} from '../envelope/json-scan.js';

/** A message the runtime would refuse, named by its source (`the argument`, `--payload`, a file, `stdin`), line and column. */
export class InvalidMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidMessage';
  }
}

const NEWLINE = 0x0a;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** What Python's json.loads accepts and strict JSON (the runtime, and the sidecar's Go) refuses. */
const NON_FINITE = /^(?:-?Infinity|NaN)/;

/** The nesting level of the container a message sits in: a payload is inside its envelope. */
export function messageDepth(asEnvelope: boolean): number {
  return asEnvelope ? 0 : 1;
}

/**
 * The messages in `text`, in order, as spans of it. A text that is one JSON value is one message;
 * otherwise, when its first line is a whole value, each line with anything but whitespace on it is
 * one (JSON lines). Values are checked as the runtime checks them (strict JSON, at most
 * MAX_NESTING levels with the envelope counted at `depth`), so what passes here reaches the handler
 * as Python's json.loads reads the same text. Throws InvalidMessage naming `from`, the line and the column.
 */
export function splitMessages(source: Buffer, from: string, depth: number): Buffer[] {
  // A leading byte-order mark is not part of the text (Python's json.loads of bytes skips it too).
  const text = source.subarray(0, 3).equals(BOM) ? source.subarray(3) : source;
  if (!isUtf8(text)) throw new InvalidMessage(`${from} is not valid UTF-8 at ${where(text, firstInvalidByte(text))}`);
  const start = skipSpace(text, 0);
  if (start === text.length) throw new InvalidMessage(`${from} is empty: expected a JSON value`);
  const whole = valueAt(text, start, text.length, depth);
  if (!(whole instanceof JsonScanError)) return [text.subarray(start, whole)];
  const lines = lineSpans(text).filter((l) => skipSpace(text, l.start, l.end) < l.end);
  const first = lines[0]!;
  if (valueAt(text, skipSpace(text, first.start, first.end), first.end, depth) instanceof JsonScanError)
    throw invalid(text, from, whole);
  return lines.map((line) => {
    const at = skipSpace(text, line.start, line.end);
    const end = valueAt(text, at, line.end, depth);
    if (end instanceof JsonScanError) throw invalid(text, from, end);
    return text.subarray(at, end);
  });
}

/** The end of the one value at `start` followed by whitespace up to `end`, or why there is none. */
function valueAt(text: Buffer, start: number, end: number, depth: number): number | JsonScanError {
  try {
    const after = validate(text, start, end, depth);
    const rest = skipSpace(text, after, end);
    if (rest !== end) return new JsonScanError('unexpected data after the value', rest);
    return after;
  } catch (err) {
    if (err instanceof JsonScanError) return err;
    throw err;
  }
}

function invalid(text: Buffer, from: string, err: JsonScanError): InvalidMessage {
  const at = where(text, err.position);
  const word = NON_FINITE.exec(text.toString('latin1', err.position, err.position + 9))?.[0];
  if (word !== undefined)
    return new InvalidMessage(
      `${from} is not valid JSON: ${word} at ${at} is not a JSON number; Python's json.loads accepts NaN and ` +
        'Infinity, but the runtime reads strict JSON, as the sidecar does, and would answer msg_parsing_error: ' +
        'send null or a string',
    );
  if (err.type === 'RecursionError')
    return new InvalidMessage(
      `${from} is nested too deeply at ${at}: the runtime accepts at most ${MAX_NESTING} levels, the envelope counted`,
    );
  return new InvalidMessage(`${from} is not valid JSON: ${err.reason} at ${at}`);
}

/** `line L, column C` (code points, from 1) of byte `position`; only the column when the text is one line. */
function where(text: Buffer, position: number): string {
  const lineStart = text.lastIndexOf(NEWLINE, position - 1) + 1;
  const column = [...text.toString('utf8', lineStart, position)].length + 1;
  if (text.indexOf(NEWLINE) < 0 || text.indexOf(NEWLINE) === text.length - 1) return `column ${column}`;
  let line = 1;
  for (let i = text.indexOf(NEWLINE); i >= 0 && i < position; i = text.indexOf(NEWLINE, i + 1)) line++;
  return `line ${line}, column ${column}`;
}

/**
 * Where the first byte that is not UTF-8 is (where() names its line and column): a byte that cannot
 * start a character, a character cut short, an overlong form, a surrogate or a code point past U+10FFFF.
 */
export function firstInvalidByte(text: Uint8Array): number {
  for (let i = 0; i < text.length; ) {
    const b = text[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    const length = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (length === 0 || i + length > text.length) return i;
    // the second byte's range rules out overlong forms, surrogates and code points past U+10FFFF
    const second = text[i + 1]!;
    const low = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const high = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (second < low || second > high) return i;
    for (let k = 2; k < length; k++) if ((text[i + k]! & 0xc0) !== 0x80) return i;
    i += length;
  }
  return text.length;
}

/** Each line of `text` without its newline. */
function lineSpans(text: Buffer): Span[] {
  const spans: Span[] = [];
  for (let start = 0; start <= text.length; ) {
    const nl = text.indexOf(NEWLINE, start);
    const end = nl < 0 ? text.length : nl;
    spans.push({ start, end });
    start = end + 1;
  }
  return spans;
}

/** The envelope the gateway would send around a payload: the payload's bytes written in as they are. */
export function wrapPayload(payload: Buffer, id: string, actors: readonly string[]): Buffer {
  const head = `{"id":${JSON.stringify(id)},"route":${JSON.stringify({ actors, current: 0 })},"payload":`;
  return Buffer.concat([Buffer.from(head), payload, Buffer.from('}')]);
}

/** The elements of the array an answer is, as spans; a text that is not an array is its one element. */
export function answerElements(answer: Buffer): Span[] {
  let i = skipSpace(answer, 0);
  if (answer[i] !== OPEN_BRACKET) return [{ start: 0, end: answer.length }];
  const elements: Span[] = [];
  i = skipSpace(answer, i + 1);
  while (i < answer.length && answer[i] !== CLOSE_BRACKET) {
    const { end } = skip(answer, i, answer.length, 1);
    elements.push({ start: i, end });
    i = skipSpace(answer, end);
    if (answer[i] === COMMA) i = skipSpace(answer, i + 1);
  }
  return elements;
}

/** The span of an element's `payload` (the last one, as Python reads it), or null when it has none. */
export function payloadOf(answer: Buffer, element: Span): Span | null {
  const scan = scanObject(answer, element.start, element.end, { depth: 2, validated: true });
  return (scan && lastMember(scan.members, 'payload')) ?? null;
}
