/** socket/deadlines.ts: every connection timeout under one timer. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Deadlines } from '../../src/socket/deadlines.js';
import { quietFor, until } from '../helpers.js';

describe('Deadlines (every connection timeout under one timer)', () => {
  it('fires what is due in order, never what was cancelled, and forgets cancelled deadlines at once', async () => {
    const deadlines = new Deadlines(50);
    const fired: string[] = [];
    // One message at a time: a read timeout set and cancelled, then a reaper set and cancelled.
    for (let i = 0; i < 1000; i++) deadlines.cancel(deadlines.add(() => fired.push(`cancelled ${i}`)));
    assert.equal(deadlines.size, 0);
    const started = Date.now();
    const times: number[] = [];
    deadlines.add(() => {
      fired.push('first');
      times.push(Date.now() - started);
      // A connection failed by its timeout is answered and then reaped: a deadline added while firing.
      deadlines.add(() => fired.push('added while firing'));
    });
    await quietFor(10, 'time is the input: the next deadlines fall due 10 ms after the first, so the timer re-arms');
    const second = deadlines.add(() => fired.push('second'));
    deadlines.add(() => fired.push('third'));
    deadlines.cancel(second);
    // 'second' falls due before 'added while firing': were it fired, it would be among these three.
    await until(
      () => `three deadlines to fire, fired: ${JSON.stringify(fired)}`,
      () => fired.length >= 3,
      2000,
    );
    assert.deepEqual(fired, ['first', 'third', 'added while firing']);
    assert.ok((times[0] ?? 0) >= 49, `fired after ${times[0]} ms, before its 50 ms`);
    assert.equal(deadlines.size, 0);
  });
});
