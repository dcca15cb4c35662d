/**
 * The supervisor's dead message buffers, bounded: collected while large messages flow, and once the
 * supervisor has gone idle while holding many.
 *
 * Payload bytes live outside V8's heap, in buffers V8 only accounts for ("external memory"), and V8
 * frees them only when it collects. With incremental marking off (heap.ts) it collects when a limit
 * is reached, which traffic does; when traffic stops, nothing does. Measured (scripts/burst-memory.mjs,
 * 40 concurrent clients x 10 MB): after the burst the supervisor held 40-150 MB of dead buffers and
 * its RSS stayed at 450-530 MiB (idle: 67 MiB) for as long as we watched. One collection freed them,
 * and freeing them lets glibc give its heap back (see read-budget.ts for why that is not enough alone).
 *
 * Idle means the event loop was busy under IDLE_UTILISATION for IDLE_CHECKS checks in a row; the
 * check itself reads two counters once a second (an unref'd timer: it never keeps the process alive).
 * Rejected: collecting after every large message (V8's incremental marking did about that and cost
 * more CPU than the message, see heap.ts); a timer reset by every message (couples the socket layer
 * to memory policy for the same effect).
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { collectGarbage } from './heap.js';

const CHECK_MS = 1000;
const IDLE_CHECKS = 2;
/** Event-loop utilisation below which a second counts as idle (a 1 MB message alone is ~0.5%). */
const IDLE_UTILISATION = 0.02;
/** External memory worth a collection: above what a few small messages leave behind. */
const EXTERNAL_THRESHOLD = 32 * 1024 * 1024;

export function collectWhenIdle(onCollect?: (freedBytes: number) => void): () => void {
  let last = performance.eventLoopUtilization();
  let idleChecks = 0;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    idleChecks = busy < IDLE_UTILISATION ? idleChecks + 1 : 0;
    if (idleChecks < IDLE_CHECKS) return;
    const external = v8.getHeapStatistics().external_memory;
    if (external < EXTERNAL_THRESHOLD) return;
    collectGarbage();
    idleChecks = 0;
    onCollect?.(external - v8.getHeapStatistics().external_memory);
  }, CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Requests at least this large count toward the bound below; smaller ones cost nothing (no check).
 */
const LARGE_REQUEST_BYTES = 1024 * 1024;
/**
 * Dead message buffers allowed before a collection while large messages flow. V8 collects by itself
 * only when external memory has grown by 64 MiB since its last collection, and glibc keeps the heap
 * those buffers grew to (a fragmented heap cannot be returned; there is no malloc_trim from Node):
 * twenty 10 MB messages left the supervisor at baseline +90 to +120 MiB for good. Collecting at 24 MiB
 * keeps it near baseline +50 MiB (docs/performance.md, "Memory after a burst").
 */
const LARGE_EXTERNAL_BYTES = 24 * 1024 * 1024;

/** Called with each request's size as it arrives: a full collection when large ones have left enough dead buffers. */
export function boundExternalMemory(requestBytes: number): void {
  if (requestBytes < LARGE_REQUEST_BYTES) return;
  if (v8.getHeapStatistics().external_memory >= LARGE_EXTERNAL_BYTES) collectGarbage();
}
