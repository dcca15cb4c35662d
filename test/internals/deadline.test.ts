/** envelope/deadline.ts: the envelope's `deadline`, an RFC 3339 time with an offset, read to the microsecond. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRfc3339 } from '../../src/envelope/deadline.js';
import { seeded } from '../helpers.js';

describe('deadline: RFC 3339', () => {
  it('RFC 3339 times are read to the microsecond, offsets included (generated, seeded)', () => {
    const { seed, next } = seeded();
    for (let i = 0; i < 300; i++) {
      const ms = Date.UTC(1970 + next(130), next(12), 1 + next(28), next(24), next(60), next(60)) + next(1000);
      const offset = (next(2) ? 1 : -1) * next(14 * 60);
      const local = new Date(ms + offset * 60_000).toISOString().slice(0, 23);
      const sign = offset < 0 ? '-' : '+';
      const abs = Math.abs(offset);
      const text = `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
      const got = parseRfc3339(text);
      assert.ok(
        got !== null && Math.abs(got - ms / 1000) < 1e-6,
        `seed ${seed}: ${text} read as ${got}, expected ${ms / 1000}`,
      );
    }
    for (const bad of [
      '2026-02-30T00:00:00Z',
      '2026-12-03T24:00:00Z',
      '2026-12-03 07:00',
      '2026-12-03T07:00:00+24:00',
      '',
    ])
      assert.equal(parseRfc3339(bad), null, bad);
    // Years 0-99 are years 0-99 (Date.UTC alone reads them as 1900-1999), with their own leap days.
    assert.equal(parseRfc3339('0000-01-01T00:00:00Z'), -62167219200);
    assert.equal(parseRfc3339('0099-12-31T23:59:59Z'), -59011459201);
    assert.equal(parseRfc3339('0000-02-29T00:00:00Z'), -62167219200 + 59 * 86400);
    assert.equal(parseRfc3339('1900-02-29T00:00:00Z'), null);
  });
});
