// The figures every benchmark reports, computed and printed one way: bench.mjs, ab.mjs, cold-start.mjs,
// pool.mjs, preload.mjs and tables.mjs import them from here.

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
