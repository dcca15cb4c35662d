/** worker/time-limit.ts: the two stages of a call's time limit, and the clock stopped while the debugger is open. */
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { TimeLimit } from '../../src/worker/time-limit.js';

describe('TimeLimit', () => {
  /** A limit on mocked timers and a clock that moves with them: what fired, at which mocked ms. */
  function limit(softMs: number, graceMs: number) {
    mock.timers.enable({ apis: ['setTimeout'] });
    let now = 0;
    const fired: Array<[string, number]> = [];
    const tick = (ms: number) => {
      now += ms;
      mock.timers.tick(ms);
    };
    const timeLimit = new TimeLimit(
      softMs,
      graceMs,
      () => fired.push(['soft', now]),
      () => fired.push(['kill', now]),
      () => now,
    );
    return { timeLimit, fired, tick };
  }

  it('the soft stage after softMs, the kill killGraceMs later', () => {
    const { fired, tick } = limit(1000, 500);
    tick(999);
    assert.deepEqual(fired, []);
    tick(1);
    tick(500);
    assert.deepEqual(fired, [
      ['soft', 1000],
      ['kill', 1500],
    ]);
    mock.timers.reset();
  });

  it('paused (the debugger is open), neither stage runs; resumed, the stage goes on with what was left', () => {
    const { timeLimit, fired, tick } = limit(1000, 500);
    tick(400);
    timeLimit.pause();
    tick(60_000);
    assert.deepEqual(fired, [], 'nothing while paused, however long');
    timeLimit.resume();
    tick(599);
    assert.deepEqual(fired, []);
    tick(1);
    assert.deepEqual(fired, [['soft', 61_000]]);
    timeLimit.pause(); // in the kill stage too
    tick(10_000);
    timeLimit.resume();
    tick(500);
    assert.deepEqual(fired.at(-1), ['kill', 71_500]);
    mock.timers.reset();
  });

  it('cleared (the call ended), nothing fires, and resume() does not restart it', () => {
    const { timeLimit, fired, tick } = limit(1000, 500);
    timeLimit.clear();
    timeLimit.resume();
    tick(5000);
    assert.deepEqual(fired, []);
    mock.timers.reset();
  });
});
