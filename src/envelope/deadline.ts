/**
 * The envelope's `deadline`: a top-level member the gateway stamps on the first hop, an RFC 3339 time
 * with an offset ("2026-12-03T07:00:00+00:00", "...Z", fractions of a second allowed). Read only when a
 * message is about to be handled, from the member's bytes; never rewritten (envelope mode forwards it).
 */
import type { RequestEnvelope } from './envelope.js';

export type Deadline =
  /** Seconds since the epoch, and the text as it came. */
  | { at: number; text: string }
  /** Present but not an RFC 3339 time: ignored (the caller warns). */
  | { invalid: string };

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** The deadline of a message, or null when it has none. */
export function deadlineOf(envelope: Pick<RequestEnvelope, 'frame' | 'members'>): Deadline | null {
  let member: { key: string; start: number; end: number } | undefined;
  for (const m of envelope.members) if (m.key === 'deadline') member = m;
  if (member === undefined) return null;
  const raw = envelope.frame.toString('utf8', member.start, member.end);
  if (raw === 'null') return null;
  let text: unknown;
  try {
    text = JSON.parse(raw);
  } catch {
    return { invalid: raw };
  }
  if (typeof text !== 'string') return { invalid: raw };
  const at = parseRfc3339(text);
  return at === null ? { invalid: text } : { at, text };
}

/** Seconds since the epoch, or null when `text` is not an RFC 3339 date-time with an offset. */
export function parseRfc3339(text: string): number | null {
  const m = RFC3339.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  // RFC 3339 allows a leap second (60); the moment is the same as :59 plus one.
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60) return null;
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return null;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // Date.UTC reads years 0-99 as 1900-1999: the year is set on its own.
  const moment = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  moment.setUTCFullYear(year, month - 1, day);
  const whole = moment.getTime() / 1000;
  const fraction = m[7] ? Number(`0${m[7]}`) : 0;
  return whole + fraction - offsetMinutes * 60;
}
