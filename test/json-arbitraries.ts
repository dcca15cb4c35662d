/**
 * Generators of JSON texts that are hard to carry exactly: integers beyond 2^53 and 2^64, `-0.0`,
 * `1.0`, floats at and beyond the double range, every string escape (NUL, lone and paired
 * surrogates), non-ASCII text, duplicate and prototype-named keys, and whitespace (newlines
 * included) between tokens. Shared by the differential tests of the runtime and of the CLI.
 */
import fc from 'fast-check';

export const space = fc.constantFrom('', '', ' ', '\n', '\t', ' \r\n ');

const integerText = fc.oneof(
  fc.constantFrom(
    '0',
    '-0',
    '1',
    '-1',
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '-9007199254740993',
    '9223372036854775807',
    '9223372036854775808',
    '-9223372036854775808',
    '-9223372036854775809',
    '18446744073709551615',
    '18446744073709551616',
    '18446744073709551617',
    '-18446744073709551617',
    '123456789012345678901234567890123456789',
  ),
  fc.bigInt({ min: -(10n ** 45n), max: 10n ** 45n }).map(String),
  fc.integer().map(String),
);

const floatText = fc.oneof(
  fc.constantFrom(
    '-0.0',
    '0.0',
    '1.0',
    '-1.0',
    '1.5',
    '0.30000000000000004',
    '3.141592653589793238462643383279',
    '5e-324',
    '4.9e-324',
    '2.2250738585072011e-308',
    '2.2250738585072014e-308',
    '1.7976931348623157e308',
    '1E+2',
    '1e-7',
    '1E400',
    '-1e400',
    '1e-400',
    '123456789012345678901234567890.5',
    '0.0021060533511106927',
    '12345678901234567890e-5',
    '100000000000000000000.0',
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => {
    const s = Object.is(d, -0) ? '-0.0' : String(d);
    return /[.e]/.test(s) ? s : `${s}.0`;
  }),
);

/** Pieces of string contents: every escape, surrogates lone and paired, NUL, non-ASCII. */
const stringPiece = fc.oneof(
  fc.constantFrom(
    '\\"',
    '\\\\',
    '\\/',
    '\\b',
    '\\f',
    '\\n',
    '\\r',
    '\\t',
    '\\u0000',
    '\\u001F',
    '\\u001f',
    '\\u00e9',
    '\\u20AC',
    '\\ud800',
    '\\udfff',
    '\\uDBFF',
    '\\ud83d\\ude00',
    '\\ude00\\ud83d',
    'é',
    '😀',
    '中文',
    '\u007f',
    '\u2028',
    'a',
    ' ',
  ),
  // Raw text: anything but what JSON requires escaped (the control characters are the point)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: JSON forbids U+0000-U+001F unescaped in strings
  fc.string({ unit: 'grapheme', maxLength: 6 }).map((s) => s.replace(/["\\\u0000-\u001f]/g, '')),
);
export const stringText = fc.array(stringPiece, { maxLength: 6 }).map((parts) => `"${parts.join('')}"`);

const keyText = fc.oneof(
  stringText,
  fc.constantFrom(
    '"__proto__"',
    '"constructor"',
    '"prototype"',
    '"toString"',
    '"hasOwnProperty"',
    '""',
    '"a"',
    '"a"',
    '"payload"',
    '"route"',
    '"pay\\u006coad"',
  ),
);

export function joined(items: string[], open: string, close: string, gap: string): string {
  return items.length === 0 ? `${open}${gap}${close}` : `${open}${gap}${items.join(`${gap},${gap}`)}${gap}${close}`;
}

export const { value: valueText, object: objectText } = fc.letrec<{ value: string; object: string; array: string }>(
  (tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      integerText,
      floatText,
      stringText,
      fc.constantFrom('true', 'false', 'null'),
      tie('object'),
      tie('array'),
    ),
    object: fc.tuple(fc.array(fc.tuple(keyText, space, tie('value')), { maxLength: 5 }), space).map(([members, gap]) =>
      joined(
        members.map(([k, g, v]) => `${k}${g}:${g}${v}`),
        '{',
        '}',
        gap,
      ),
    ),
    array: fc
      .tuple(fc.array(tie('value'), { maxLength: 5 }), space)
      .map(([items, gap]) => joined(items, '[', ']', gap)),
  }),
);

/** The text without whitespace between tokens, by another road than the CLI's layout: a regular expression. */
export const withoutSpace = (text: string): string =>
  text.replace(/("(?:[^"\\]|\\.)*")|[ \t\n\r]+/g, (_m, s: string | undefined) => s ?? '');
