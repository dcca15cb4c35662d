/**
 * The supervisor's own memory, tuned once at startup for its one job: moving large byte buffers
 * that live for one message. Its JavaScript heap is small (~10 MB) and flat; payload bytes live
 * outside it, in buffers that V8 only accounts for.
 *
 * keepFreedMemory: make glibc keep freed memory in the heap instead of returning it to the kernel.
 *
 * Every large message is read in 64 KiB chunks that live until the next garbage collection. With
 * glibc's default thresholds (128 KiB) freed memory at the top of the heap goes straight back to
 * the kernel, so the next message faults its pages in again: on the benchmark VM a stream of 1 MB
 * messages cost the supervisor ~200 page faults each (~10 with this), and the first 10 MB messages
 * ~3 000 each (~50 ms). The shim gets larger thresholds through GLIBC_TUNABLES (worker.ts), but a
 * process cannot set its own tunables once started.
 *
 * glibc raises both thresholds by itself when a block it had to mmap is freed (the mmap threshold
 * becomes that block's size, the trim threshold twice that, up to 32 MiB: see mallopt(3),
 * M_MMAP_THRESHOLD). So we allocate one such block and free it, once, at startup.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/** Both tunings, each skipped when the operator chose otherwise. */
export function tuneSupervisorMemory(env: NodeJS.ProcessEnv, execArgv: readonly string[]): void {
  keepFreedMemory(env);
  markOnlyWhenNeeded(execArgv);
}

/** Just under glibc's 32 MiB ceiling for the dynamic threshold (64-bit). */
const BLOCK_BYTES = 30 * 1024 * 1024;

/**
 * Does nothing when the operator set GLIBC_TUNABLES (theirs wins, and explicit tunables switch the
 * dynamic adjustment off anyway) or off Linux; on musl it is a harmless allocation.
 */
function keepFreedMemory(env: NodeJS.ProcessEnv): void {
  if (process.platform !== 'linux' || 'GLIBC_TUNABLES' in env) return;
  let block: Buffer | null = Buffer.allocUnsafeSlow(BLOCK_BYTES);
  block[0] = 1;
  block = null;
  // The free must happen now, not at some later collection: collect once, explicitly.
  collectGarbage();
}

let gcFunction: (() => void) | null = null;

/** A full, atomic collection now (a few ms on this ~10 MB heap). */
export function collectGarbage(): void {
  if (gcFunction === null) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed) gcFunction = exposed;
    else {
      v8.setFlagsFromString('--expose-gc');
      gcFunction = vm.runInNewContext('gc') as () => void;
      v8.setFlagsFromString('--no-expose-gc');
    }
  }
  gcFunction();
}

/**
 * Switch off V8's incremental marking. With it on, V8 started a marking cycle every ~5 messages of
 * 1 MB although the old generation stood at 10 MB of a 26-47 MB limit (--trace-incremental-marking
 * says only "Start (task)"; the external memory of the message buffers is the likely driver), and the
 * cycles cost the supervisor more CPU than the message: 7.4 ms a 1 MB message with them, 2.5 ms
 * without. V8 still collects, atomically, when a limit is reached: the old-space limit or the
 * external-memory limit (so buffers that lived long enough to be promoted are still freed); a full
 * collection of this heap takes a few milliseconds. The price is a higher plateau (~30 MiB, see
 * docs/leak-check.md). `node --incremental-marking` wins.
 */
function markOnlyWhenNeeded(execArgv: readonly string[]): void {
  if (execArgv.some((arg) => /^--(no-)?incremental[-_]marking(=|$)/.test(arg))) return;
  v8.setFlagsFromString('--no-incremental-marking');
}
