/**
 * The supervisor's dead message buffers, bounded: collected while large messages flow, and once more
 * when the supervisor has gone idle still holding many.
 *
 * Payload bytes live outside V8's heap, in buffers V8 only accounts for ("external memory"), and V8
 * frees them only when it collects. With incremental marking off (heap.ts) it collects when a limit
 * is reached: external memory grown by 64 MiB since its last collection. Two things follow:
 *
 * - While large messages flow, the heap those dead buffers grow into stays with the process: glibc
 *   cannot return a fragmented heap, and Node has no malloc_trim. Twenty 10 MB messages left the
 *   supervisor at baseline +90 to +120 MiB for good. Collecting once 24 MiB of external memory is
 *   held when a large request arrives keeps it near baseline +70 MiB (docs/performance.md, "Memory
 *   after a burst").
 * - When traffic stops, nothing reaches a limit. Measured (scripts/burst-memory.mjs, 40 concurrent
 *   clients x 10 MB): after the burst the supervisor held 40-150 MB of dead buffers and its RSS stayed
 *   at 450-530 MiB (idle: 67 MiB) for as long as we watched. One collection freed them, and freeing
 *   them lets glibc give back what it can. So a large request also arms a check: once the event loop
 *   has been idle for IDLE_CHECKS seconds in a row with more than IDLE_EXTERNAL_BYTES held, collect.
 *
 * Nothing runs without large requests: the check is armed by one and disarms itself once it has
 * collected or nothing is left to collect, so an idle runtime does not wake up for it.
 * Rejected: collecting after every large message (V8's incremental marking did about that and cost
 * more CPU than the message, see heap.ts).
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { collectGarbage } from './heap.js';

/** Requests at least this large count; smaller ones cost nothing (no check). */
const LARGE_REQUEST_BYTES = 1024 * 1024;
/** Dead buffers allowed, when a large request arrives, before a collection. */
const LARGE_EXTERNAL_BYTES = 24 * 1024 * 1024;
const CHECK_MS = 1000;
const IDLE_CHECKS = 2;
/** Event-loop utilisation below which a second counts as idle (a 1 MB message alone is ~0.5%). */
const IDLE_UTILISATION = 0.02;
/** External memory worth a collection at idle: above what a few small messages leave behind. */
const IDLE_EXTERNAL_BYTES = 16 * 1024 * 1024;

export class MessageMemory {
  private timer: NodeJS.Timeout | null = null;
  private last = performance.eventLoopUtilization();
  private idleChecks = 0;

  constructor(private readonly onIdleCollect?: (freedBytes: number) => void) {}

  /**
   * Called as each large call has been handed to Python: while Python decodes it, the supervisor is
   * waiting, so the collection costs the message no time on two cores.
   */
  request(bytes: number): void {
    if (bytes < LARGE_REQUEST_BYTES) return;
    if (v8.getHeapStatistics().external_memory >= LARGE_EXTERNAL_BYTES) collectGarbage();
    this.armIdleCheck();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private armIdleCheck(): void {
    this.idleChecks = 0;
    if (this.timer !== null) return;
    this.last = performance.eventLoopUtilization();
    this.timer = setTimeout(() => this.check(), CHECK_MS);
    this.timer.unref();
  }

  private check(): void {
    this.timer = null;
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    this.idleChecks = busy < IDLE_UTILISATION ? this.idleChecks + 1 : 0;
    const external = v8.getHeapStatistics().external_memory;
    if (external < IDLE_EXTERNAL_BYTES) return; // nothing left worth collecting: disarmed
    if (this.idleChecks < IDLE_CHECKS) {
      this.timer = setTimeout(() => this.check(), CHECK_MS);
      this.timer.unref();
      return;
    }
    collectGarbage();
    this.onIdleCollect?.(external - v8.getHeapStatistics().external_memory);
  }
}
