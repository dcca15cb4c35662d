/**
 * Lays JSON text out for people without reading its values: every token (string, number, literal)
 * is copied byte for byte, so `1.0`, `-0.0`, 2**70 and `"\ud800"` print as the runtime wrote them;
 * only the whitespace between tokens changes. One loop with a depth counter, no recursion: nesting
 * of any depth costs no stack.
 */
import { skip, skipSpace } from '../envelope/json-scan.js';

const NEWLINE = 0x0a;
const SPACE = 0x20;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * `text` laid out again. With `indent` null: compact, no whitespace at all outside strings (one
 * line). With a string: each member and element on its own line, indented by `indent` once per
 * level, `": "` after member names, empty containers as `{}` and `[]`: the layout of Python's
 * `json.dumps(value, indent=…)` and of JSON.stringify(value, null, …). Throws JsonScanError where a
 * token is not JSON.
 */
export function layout(text: Buffer, indent: string | null): Buffer {
  const out = new Output(text.length);
  const end = text.length;
  let depth = 0;
  const newline = () => {
    if (indent === null) return;
    out.byte(NEWLINE);
    out.text(indent.repeat(depth));
  };
  for (let i = skipSpace(text, 0); i < end; i = skipSpace(text, i)) {
    const c = text[i]!;
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      out.byte(c);
      const next = skipSpace(text, i + 1);
      if (text[next] === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
        out.byte(text[next]!);
        i = next + 1;
      } else {
        depth++;
        newline();
        i = next;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth = Math.max(depth - 1, 0);
      newline();
      out.byte(c);
      i++;
    } else if (c === COMMA) {
      out.byte(c);
      newline();
      i++;
    } else if (c === COLON) {
      out.byte(c);
      if (indent !== null) out.byte(SPACE);
      i++;
    } else {
      const after = skip(text, i, end, 0).end;
      out.bytes(text, i, after);
      i = after;
    }
  }
  return out.done();
}

/** A buffer that grows by doubling, so a large answer is laid out without a piece per token. */
class Output {
  private buf: Buffer;
  private length = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(Math.max(size, 64));
  }

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.length++] = b;
  }

  bytes(src: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.length += src.copy(this.buf, this.length, start, end);
  }

  text(s: string): void {
    const n = Buffer.byteLength(s);
    this.room(n);
    this.length += this.buf.write(s, this.length, n, 'utf8');
  }

  done(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}
