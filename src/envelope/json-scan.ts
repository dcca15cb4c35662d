/**
 * Reads JSON as bytes: finds the members of an object as byte spans, and checks values against
 * strict JSON, without building JavaScript values.
 *
 * The supervisor only forwards most of an envelope, and a forwarded value must leave exactly as it
 * arrived: JSON.parse would round integers beyond 2^53, turn `-0.0` and `1.0` into `0` and `1`, and
 * treat a `"__proto__"` key as the object's prototype. So members stay spans of the request frame,
 * and the rules read them here. Every loop is iterative and nesting is bounded (`MAX_NESTING`): no
 * input can exhaust the stack, the way JSON.stringify of a 100 000-deep value did.
 *
 * Two ways over a value: `validate` checks every byte (strings, escapes, numbers, literals), for the
 * small members the supervisor forwards; `skip` only tracks strings and brackets, for the payload,
 * which Python's json decodes (and so checks) anyway. Skipping a 10 MB string costs one `indexOf`.
 */

export interface Span {
  start: number;
  end: number;
}

export interface Member {
  /** The decoded member name (escapes resolved, as Python's json would). */
  key: string;
  /** The whole member, from its name's opening quote to the end of its value. */
  memberStart: number;
  /** The value. */
  start: number;
  end: number;
}

/**
 * Deepest nesting accepted anywhere in an envelope, counting the envelope object as level 1.
 * Python's json stops at about 995 levels on 3.7 to 3.11 (1497 on 3.12, 9998 on 3.13), Go's, which
 * the sidecar uses, at 10 000; one bound for the whole frame means a too-deep value is refused the
 * same way wherever it sits.
 */
export const MAX_NESTING = 1000;

export class JsonScanError extends Error {
  /** The top-level member the error is in, once known. */
  member: string | undefined;

  constructor(
    readonly reason: string,
    readonly position: number,
    /** The Python exception a json.loads of the same text raises. */
    readonly type: 'JSONDecodeError' | 'RecursionError' = 'JSONDecodeError',
  ) {
    super(`${reason} at byte ${position}`);
    this.name = 'JsonScanError';
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** An integer token of this many digits may not fit in 64 bits (2^63 has 19 digits, 2^64 has 20). */
const WIDE_INTEGER_DIGITS = 19;

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

export function skipSpace(buf: Uint8Array, i: number, end = buf.length): number {
  while (i < end && isSpace(buf[i])) i++;
  return i;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= ZERO && c <= NINE;
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

function tooDeep(i: number): JsonScanError {
  return new JsonScanError(`nesting deeper than ${MAX_NESTING} levels`, i, 'RecursionError');
}

/** `i` is at an opening quote; returns the index after the closing one. Checks nothing inside. */
function skipString(buf: Buffer, i: number, end: number): number {
  for (;;) {
    const close = buf.indexOf(QUOTE, i + 1);
    if (close < 0 || close >= end) throw new JsonScanError('unterminated string', i);
    let backslashes = 0;
    for (let k = close - 1; buf[k] === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return close + 1;
    i = close;
  }
}

/** `i` is at an opening quote; returns the index after the closing one, the string checked as JSON. */
function validateString(buf: Buffer, i: number, end: number): number {
  const open = i;
  for (i++; i < end; i++) {
    const c = buf[i]!;
    if (c === QUOTE) return i + 1;
    if (c < 0x20) throw new JsonScanError('control character in string', i);
    if (c === BACKSLASH) {
      const e = buf[++i];
      if (e === 0x75 /* u */) {
        if (!(isHex(buf[i + 1]) && isHex(buf[i + 2]) && isHex(buf[i + 3]) && isHex(buf[i + 4]))) {
          throw new JsonScanError('invalid \\u escape', i - 1);
        }
        i += 4;
      } else if (
        !(
          e === QUOTE ||
          e === BACKSLASH ||
          e === 0x2f ||
          e === 0x62 ||
          e === 0x66 ||
          e === 0x6e ||
          e === 0x72 ||
          e === 0x74
        )
      ) {
        throw new JsonScanError('invalid escape', i - 1);
      }
    }
  }
  throw new JsonScanError('unterminated string', open);
}

/** Returns the index after a JSON number starting at `i`, or throws. */
function validateNumber(buf: Buffer, i: number, end: number): number {
  const start = i;
  if (buf[i] === MINUS) i++;
  if (buf[i] === ZERO) i++;
  else if (isDigit(buf[i])) while (i < end && isDigit(buf[i])) i++;
  else throw new JsonScanError('invalid number', start);
  if (buf[i] === DOT) {
    i++;
    if (!isDigit(buf[i])) throw new JsonScanError('invalid number', start);
    while (i < end && isDigit(buf[i])) i++;
  }
  if (buf[i] === LOWER_E || buf[i] === UPPER_E) {
    i++;
    if (buf[i] === PLUS || buf[i] === MINUS) i++;
    if (!isDigit(buf[i])) throw new JsonScanError('invalid number', start);
    while (i < end && isDigit(buf[i])) i++;
  }
  return i;
}

const LITERALS: ReadonlyArray<readonly [number, Buffer]> = [
  [0x74, Buffer.from('true')],
  [0x66, Buffer.from('false')],
  [0x6e, Buffer.from('null')],
];

function validateLiteral(buf: Buffer, i: number, end: number): number {
  for (const [first, word] of LITERALS) {
    if (buf[i] === first) {
      if (i + word.length <= end && buf.compare(word, 0, word.length, i, i + word.length) === 0) return i + word.length;
      break;
    }
  }
  throw new JsonScanError('expected a value', i);
}

/**
 * Checks the JSON value starting at `i` (no leading space) and returns the index after it. `depth`
 * is the nesting level of the value's container. Strict JSON, as Python's json.loads with NaN and
 * Infinity refused: the same texts pass here and there.
 */
export function validate(buf: Buffer, i: number, end: number, depth: number): number {
  // Containers open so far, innermost last: one byte each, the bracket that closes them.
  const closers: number[] = [];
  for (;;) {
    // A value is expected at i.
    const c = buf[i];
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth + closers.length + 1 > MAX_NESTING) throw tooDeep(i);
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      i = skipSpace(buf, i + 1, end);
      if (buf[i] === close) {
        i++;
      } else {
        closers.push(close);
        if (close === CLOSE_BRACE) i = memberName(buf, i, end);
        continue;
      }
    } else if (c === QUOTE) {
      i = validateString(buf, i, end);
    } else if (c === MINUS || isDigit(c)) {
      i = validateNumber(buf, i, end);
    } else if (i >= end) {
      throw new JsonScanError('expected a value', i);
    } else {
      i = validateLiteral(buf, i, end);
    }
    // After a value: a separator or the end of its container.
    for (;;) {
      const close = closers[closers.length - 1];
      if (close === undefined) return i;
      i = skipSpace(buf, i, end);
      if (buf[i] === COMMA) {
        i = skipSpace(buf, i + 1, end);
        if (close === CLOSE_BRACE) i = memberName(buf, i, end);
        break;
      }
      if (buf[i] !== close) {
        throw new JsonScanError(close === CLOSE_BRACE ? "expected ',' or '}'" : "expected ',' or ']'", i);
      }
      closers.pop();
      i++;
    }
  }
}

/** At a member name inside an object: checks `"name" :` and returns the index of the value. */
function memberName(buf: Buffer, i: number, end: number): number {
  if (buf[i] !== QUOTE) throw new JsonScanError('expected a member name', i);
  i = skipSpace(buf, validateString(buf, i, end), end);
  if (buf[i] !== COLON) throw new JsonScanError("expected ':'", i);
  return skipSpace(buf, i + 1, end);
}

export interface Skipped {
  end: number;
  /** An integer with 19 or more digits occurs outside strings: a 64-bit decoder could not keep it exact. */
  wideIntegers: boolean;
}

/**
 * Finds the end of the value at `i` by its strings and brackets alone (the payload path: Python
 * checks the value). Nesting is still bounded, and integer tokens too wide for 64 bits are noticed
 * on the way, so the shim knows where orjson would turn them into floats.
 */
export function skip(buf: Buffer, i: number, end: number, depth: number): Skipped {
  const c = buf[i];
  if (c === QUOTE) return { end: skipString(buf, i, end), wideIntegers: false };
  if (c !== OPEN_BRACKET && c !== OPEN_BRACE) {
    const after = c === MINUS || isDigit(c) ? validateNumber(buf, i, end) : validateLiteral(buf, i, end);
    let digits = after - i;
    if (c === MINUS) digits--;
    return {
      end: after,
      wideIntegers: digits >= WIDE_INTEGER_DIGITS && isIntegerPart(buf, after - digits, buf[after]),
    };
  }
  let level = 0;
  let run = 0;
  let wideIntegers = false;
  for (; i < end; i++) {
    const b = buf[i]!;
    if (b >= ZERO && b <= NINE) {
      run++;
      continue;
    }
    if (run >= WIDE_INTEGER_DIGITS && isIntegerPart(buf, i - run, b)) wideIntegers = true;
    run = 0;
    if (b === QUOTE) {
      i = skipString(buf, i, end) - 1;
    } else if (b === OPEN_BRACKET || b === OPEN_BRACE) {
      if (depth + ++level > MAX_NESTING) throw tooDeep(i);
    } else if (b === CLOSE_BRACKET || b === CLOSE_BRACE) {
      if (--level === 0) return { end: i + 1, wideIntegers };
    }
  }
  throw new JsonScanError('unterminated array or object', end);
}

/** The digits at `from` are a whole integer token (not a fraction or exponent, not followed by one). */
function isIntegerPart(buf: Buffer, from: number, next: number | undefined): boolean {
  if (next === DOT || next === LOWER_E || next === UPPER_E) return false;
  let before = buf[from - 1];
  if (before === MINUS) before = buf[from - 2];
  return !(before === DOT || before === LOWER_E || before === UPPER_E || before === PLUS || isDigit(before));
}

/** What the first byte of a JSON value says about its type, worded for people who write Python. */
export function describeValue(buf: Uint8Array, i = 0, end = buf.length): string {
  i = skipSpace(buf, i, end);
  const c = i < end ? buf[i] : undefined;
  if (c === undefined) return 'nothing';
  if (c === OPEN_BRACE) return 'an object';
  if (c === OPEN_BRACKET) return 'an array';
  if (c === QUOTE) return 'a string';
  if (c === 0x6e) return 'null';
  if (c === 0x74 || c === 0x66) return 'a boolean';
  if (c === MINUS || isDigit(c)) return 'a number';
  return 'invalid JSON';
}

export function isObjectAt(buf: Uint8Array, span: Span): boolean {
  return buf[span.start] === OPEN_BRACE;
}

export function isStringAt(buf: Uint8Array, span: Span): boolean {
  return buf[span.start] === QUOTE;
}

export function isArrayAt(buf: Uint8Array, span: Span): boolean {
  return buf[span.start] === OPEN_BRACKET;
}

export interface ObjectScan {
  /** Every member in order, duplicates included (Python and JSON.parse keep the last). */
  members: Member[];
  /** The index of the closing brace. */
  close: number;
  /** Set when a member was skipped rather than validated: what `skip` noticed about it. */
  wideIntegers: boolean;
}

export interface ScanOptions {
  /** Nesting level of the object itself (1 for a whole envelope). */
  depth: number;
  /** Members to skip rather than validate (the payload). */
  skipped?: string;
  /** The text was validated already (a member of a checked envelope): only locate the members. */
  validated?: boolean;
}

/**
 * The members of the object at `[start, end)`, which must hold exactly one object and whitespace.
 * Returns null when the text does not start with `{`. Member values are validated, except the one
 * named by `skipped`, which is only delimited (see `skip`).
 */
export function scanObject(
  buf: Buffer,
  start: number,
  end: number,
  { depth, skipped, validated = false }: ScanOptions,
): ObjectScan | null {
  let i = skipSpace(buf, start, end);
  if (buf[i] !== OPEN_BRACE) return null;
  if (depth > MAX_NESTING) throw tooDeep(i);
  const members: Member[] = [];
  let wideIntegers = false;
  i = skipSpace(buf, i + 1, end);
  if (buf[i] !== CLOSE_BRACE) {
    for (;;) {
      if (buf[i] !== QUOTE) throw new JsonScanError('expected a member name', i);
      const memberStart = i;
      const keyEnd = validateString(buf, i, end);
      const key = decodeKey(buf, i, keyEnd);
      i = skipSpace(buf, keyEnd, end);
      if (buf[i] !== COLON) throw new JsonScanError("expected ':'", i);
      const valueStart = skipSpace(buf, i + 1, end);
      let valueEnd: number;
      try {
        if (validated || key === skipped) {
          const s = skip(buf, valueStart, end, depth);
          valueEnd = s.end;
          wideIntegers ||= s.wideIntegers;
        } else {
          valueEnd = validate(buf, valueStart, end, depth);
        }
      } catch (err) {
        if (err instanceof JsonScanError) err.member ??= key;
        throw err;
      }
      members.push({ key, memberStart, start: valueStart, end: valueEnd });
      i = skipSpace(buf, valueEnd, end);
      if (buf[i] === COMMA) {
        i = skipSpace(buf, i + 1, end);
        continue;
      }
      if (buf[i] === CLOSE_BRACE) break;
      throw new JsonScanError("expected ',' or '}'", i);
    }
  }
  const close = i;
  i = skipSpace(buf, i + 1, end);
  if (i !== end) throw new JsonScanError('unexpected data after the object', i);
  return { members, close, wideIntegers };
}

/** The last member with this name: the one Python's json and JSON.parse would keep. */
export function lastMember(members: readonly Member[], key: string): Member | undefined {
  for (let k = members.length - 1; k >= 0; k--) if (members[k]!.key === key) return members[k];
  return undefined;
}

function decodeKey(buf: Buffer, start: number, end: number): string {
  // Already validated: only a name with escapes needs decoding. (The search is bounded to the name:
  // an unbounded indexOf ran over the whole 10 MB frame once per member.)
  if (buf.subarray(start, end).indexOf(BACKSLASH) < 0) return buf.toString('utf8', start + 1, end - 1);
  return JSON.parse(buf.toString('utf8', start, end)) as string;
}
