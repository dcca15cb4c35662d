/** worker/call-clock.ts: the soft time limit's lazy clock fires for a call that overruns, never for one that ended. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CallClock } from '../../src/worker/call-clock.js';
import { quietFor, until } from '../helpers.js';

describe('CallClock (the soft time limit without a timer per message)', () => {
  it('fires for a call past its deadline, never for calls that ended, across many short calls', async () => {
    const clock = new CallClock();
    const fired: string[] = [];
    for (let i = 0; i < 50; i++) {
      clock.start(40, () => fired.push(`short ${i}`));
      clock.stop();
    }
    const started = Date.now();
    let firedAt = 0;
    clock.start(60, () => {
      fired.push('long');
      firedAt = Date.now();
    });
    // The short calls' 40 ms deadlines pass before the long call's 60 ms one: had one fired, it would be first.
    await until('the long call to fire', () => fired.includes('long'), 1500);
    assert.deepEqual(fired, ['long']);
    assert.ok(firedAt - started >= 59, `fired after ${firedAt - started} ms, before its 60 ms deadline`);
    clock.start(30, () => fired.push('after'));
    clock.stop();
    // Timers fire in the order they fall due: this one, due later, ends after the clock's 30 ms wake-up.
    await quietFor(100, "negative: a stopped call's deadline passes and nothing fires");
    assert.deepEqual(fired, ['long']);
  });
});
