// The figures every benchmark reports, computed and printed one way: bench.mjs, ab.mjs, cold-start.mjs,
// pool.mjs, preload.mjs and tables.mjs import them from here.
import fs from 'node:fs';

/** The median of `xs` (the mean of the middle two when their number is even). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The `p`th percentile of `sorted` (ascending): the nearest rank at or below. */
export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A figure with about three significant digits ('–' when a runtime did not run). */
export function fmt(x, digits = 2) {
  if (x === undefined) return '–';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 0.1 || x === 0 ? x.toFixed(digits) : x.toFixed(3);
}

/**
 * CPU time (nanoseconds) used so far by `pid` and its descendants (the Python processes), every thread,
 * from /proc/<pid>/task/<tid>/schedstat, and by `pid`'s main thread alone: `{ ns, mainNs }`, or null off
 * Linux. A process that exits during the walk is left out.
 */
export function treeCpu(pid) {
  if (!fs.existsSync(`/proc/${pid}/task`)) return null;
  let ns = 0;
  let mainNs = 0;
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop();
    let tids = [];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const taskNs = Number(fs.readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        ns += taskNs;
        if (Number(tid) === pid) mainNs = taskNs;
        const kids = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (kids) todo.push(...kids.split(' ').map(Number));
      } catch {}
    }
  }
  return { ns, mainNs };
}
