/** log-sink.ts (and logger.ts's batched child): the per-message line batched, every other line at once and in order. */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { BATCH_BYTES, BATCH_MS, Batching, type LogSink } from '../../src/log-sink.js';
import { batched, createLogger, LineSplitter } from '../../src/logger.js';
import { until } from '../helpers.js';

describe('log lines: the per-message line batched, every other line at once and in order', () => {
  /** A sink that records each write(2) the batching sink asks of it. */
  function recording(): LogSink & { writes: string[] } {
    const writes: string[] = [];
    return { kind: 'file', onRecovered: null, writes, write: (text) => writes.push(text), flush: async () => {} };
  }
  const msgs = (text: string) =>
    text
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);

  it('holds batched lines until another line, the timer or a flush; never reorders', async () => {
    const inner = recording();
    const sink = new Batching(inner);
    const log = createLogger('info', 'json', sink);
    const perMessage = batched(log);
    assert.equal(batched(log), perMessage, 'one batched child per logger');
    // The first after a quiet spell: nothing to batch it with, and a timer would be a wake-up of its own.
    perMessage.info('handled 0');
    assert.deepEqual(inner.writes.map(msgs), [['handled 0']], 'a sparse line is written at once');
    perMessage.info('handled 1');
    perMessage.info('handled 2');
    assert.equal(inner.writes.length, 1, 'lines coming faster than one per BATCH_MS are held');
    log.warn('a warning');
    assert.deepEqual(
      inner.writes.slice(1).map(msgs),
      [['handled 1', 'handled 2'], ['a warning']],
      'held lines first, in one write',
    );
    perMessage.info('handled 3');
    log.info('not batched either');
    assert.deepEqual(inner.writes.slice(3).map(msgs), [['handled 3'], ['not batched either']]);
    perMessage.info('handled 4');
    await until(`the batch timer's write (${BATCH_MS} ms)`, () => inner.writes.length >= 6, BATCH_MS * 25, 5);
    const timerWrite = performance.now();
    assert.deepEqual(inner.writes.slice(5).map(msgs), [['handled 4']], 'written by the timer');
    await until(
      'a quiet spell of BATCH_MS',
      () => performance.now() - timerWrite >= BATCH_MS && performance.now(),
      BATCH_MS * 25,
      5,
    );
    perMessage.info('handled 5');
    perMessage.info('handled 6');
    assert.deepEqual(inner.writes.slice(6).map(msgs), [['handled 5']], 'sparse again: at once');
    await sink.flush(100);
    assert.deepEqual(inner.writes.slice(7).map(msgs), [['handled 6']], 'written by flush');
  });

  it('writes a batch at once past 16 KiB; a child of a batched logger is not batched', () => {
    const inner = recording();
    const log = createLogger('info', 'json', new Batching(inner));
    const perMessage = batched(log);
    const long = 'x'.repeat(1000);
    perMessage.info('the first, written at once (nothing came before it)');
    let lines = 0;
    while (inner.writes.length === 1 && lines < 100) {
      perMessage.info(long);
      lines++;
    }
    const batch = inner.writes[1] as string;
    const lastLine = batch.slice(batch.lastIndexOf('\n', batch.length - 2) + 1);
    assert.equal(msgs(batch).length, lines, 'every line in the one write');
    assert.ok(
      batch.length >= BATCH_BYTES && batch.length - lastLine.length < BATCH_BYTES,
      'written as it crossed 16 KiB',
    );
    perMessage.child({ worker: 1 }).info('from a child');
    assert.equal(inner.writes.length, 3, 'only the marked logger is batched');
  });
});

describe('LineSplitter: what the handler writes, cut into lines', () => {
  it('a character whose UTF-8 bytes arrive in two chunks is read whole', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    const bytes = Buffer.from('é 🙂 fin\nnext\n');
    for (let i = 0; i < bytes.length; i++) splitter.push(bytes.subarray(i, i + 1));
    splitter.push(Buffer.from([0xc3]));
    splitter.flush();
    assert.deepEqual(lines, ['é 🙂 fin', 'next', '\ufffd']);
  });
});
