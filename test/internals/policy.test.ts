/** worker/policy.ts: the restart backoff and the recycle rule, as data. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recycleReason, restartDelay } from '../../src/worker/policy.js';

describe('restart backoff', () => {
  it('is immediate first, then doubles up to a bound', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => restartDelay(n)),
      [0, 250, 500, 1000, 2000],
    );
    assert.equal(restartDelay(50), 15_000);
  });
});

describe('recycling', () => {
  it('the recycle rule reads usage as data', () => {
    const rule = { maxMessages: 10, maxMemoryBytes: 1024 ** 3, memoryErrors: 3 };
    assert.equal(recycleReason(rule, { messages: 9, rssBytes: 1024, consecutiveMemoryErrors: 2 }), null);
    assert.equal(
      recycleReason(rule, { messages: 10, rssBytes: null, consecutiveMemoryErrors: 0 })?.reason,
      'max_messages',
    );
    assert.equal(
      recycleReason(rule, { messages: 1, rssBytes: 1024 ** 3 + 1, consecutiveMemoryErrors: 0 })?.reason,
      'max_memory',
    );
    assert.equal(
      recycleReason(rule, { messages: 1, rssBytes: null, consecutiveMemoryErrors: 3 })?.reason,
      'memory_errors',
    );
  });
});
