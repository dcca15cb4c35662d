/**
 * Finds the top-level members of a JSON object without parsing their values.
 *
 * The supervisor must read `route`, `headers` and `id`, but the payload can be megabytes it
 * only forwards. This scanner walks the object's structure, skipping over each value (strings
 * by native `indexOf`, containers by bracket depth), and returns byte spans. Each span is
 * later checked by a real parser (JSON.parse for the small members, Python's json for the
 * payload), so together they validate the whole frame.
 */

export interface Span {
  start: number;
  end: number;
}

export class JsonScanError extends Error {
  constructor(message: string, readonly position: number) {
    super(`${message} at byte ${position}`);
    this.name = 'JsonScanError';
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(buf: Uint8Array, i: number): number {
  while (isSpace(buf[i])) i++;
  return i;
}

/** `i` is at an opening quote; returns the index after the closing one. */
function skipString(buf: Buffer, i: number): number {
  for (;;) {
    const close = buf.indexOf(QUOTE, i + 1);
    if (close < 0) throw new JsonScanError('unterminated string', i);
    let backslashes = 0;
    for (let k = close - 1; buf[k] === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return close + 1;
    i = close;
  }
}

/** `i` is at `[` or `{`; returns the index after the matching bracket. Iterative: depth is a counter. */
function skipContainer(buf: Buffer, i: number): number {
  const n = buf.length;
  let depth = 0;
  for (; i < n; i++) {
    const c = buf[i];
    if (c === QUOTE) {
      i = skipString(buf, i) - 1;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      if (--depth === 0) return i + 1;
    }
  }
  throw new JsonScanError('unterminated array or object', n);
}

function skipValue(buf: Buffer, i: number): number {
  const c = buf[i];
  if (c === QUOTE) return skipString(buf, i);
  if (c === OPEN_BRACKET || c === OPEN_BRACE) return skipContainer(buf, i);
  const start = i;
  while (i < buf.length) {
    const d = buf[i];
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break;
    i++;
  }
  if (i === start) throw new JsonScanError('expected a value', i);
  return i;
}

/** What the first byte of a JSON text says about its type, for error messages. */
export function describeJsonStart(buf: Buffer): string {
  const c = buf[skipSpace(buf, 0)];
  if (c === undefined) return 'nothing';
  if (c === OPEN_BRACKET) return 'an array';
  if (c === QUOTE) return 'a string';
  if (c === 0x6e) return 'null';
  if (c === 0x74 || c === 0x66) return 'a boolean';
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return 'a number';
  return 'invalid JSON';
}

/**
 * Spans of the members of the JSON object in `buf`. Later duplicates win, as in JSON.parse
 * and Python's json. Returns null when the text does not start with `{`.
 */
export function scanObjectMembers(buf: Buffer): Map<string, Span> | null {
  let i = skipSpace(buf, 0);
  if (buf[i] !== OPEN_BRACE) return null;
  const members = new Map<string, Span>();
  i = skipSpace(buf, i + 1);
  if (buf[i] === CLOSE_BRACE) {
    i++;
  } else {
    for (;;) {
      if (buf[i] !== QUOTE) throw new JsonScanError('expected a member name', i);
      const keyEnd = skipString(buf, i);
      const key = decodeKey(buf, i, keyEnd);
      i = skipSpace(buf, keyEnd);
      if (buf[i] !== COLON) throw new JsonScanError("expected ':'", i);
      const start = skipSpace(buf, i + 1);
      const end = skipValue(buf, start);
      members.set(key, { start, end });
      i = skipSpace(buf, end);
      if (buf[i] === COMMA) {
        i = skipSpace(buf, i + 1);
        continue;
      }
      if (buf[i] === CLOSE_BRACE) {
        i++;
        break;
      }
      throw new JsonScanError("expected ',' or '}'", i);
    }
  }
  i = skipSpace(buf, i);
  if (i !== buf.length) throw new JsonScanError('unexpected data after the object', i);
  return members;
}

function decodeKey(buf: Buffer, start: number, end: number): string {
  try {
    return JSON.parse(buf.toString('utf8', start, end)) as string;
  } catch {
    throw new JsonScanError('invalid member name', start);
  }
}
