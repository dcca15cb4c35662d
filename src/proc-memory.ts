/**
 * How much memory a process holds, from /proc (Linux; null elsewhere, or once the process is gone).
 * The one reader of it: the recycle rule (between messages, so the cheapest file), the metrics and
 * `call`'s REPORT line.
 */
import { readFileSync } from 'node:fs';

let pageSize: number | null = null;

/** The kernel's page size, from this process's auxiliary vector (AT_PAGESZ); 4096 where unreadable. */
function systemPageSize(): number {
  if (pageSize !== null) return pageSize;
  pageSize = 4096;
  try {
    const auxv = readFileSync('/proc/self/auxv');
    for (let i = 0; i + 16 <= auxv.length; i += 16) {
      if (auxv.readBigUInt64LE(i) === 6n) pageSize = Number(auxv.readBigUInt64LE(i + 8));
    }
  } catch {
    // not Linux
  }
  return pageSize;
}

/** Resident memory (RSS) in bytes: one read of /proc/<pid>/statm, a line of numbers. */
export function residentBytes(pid: number): number | null {
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]);
    return Number.isFinite(pages) ? pages * systemPageSize() : null;
  } catch {
    return null;
  }
}

/** The most resident memory the process has used so far (VmHWM), in bytes. */
export function peakResidentBytes(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
