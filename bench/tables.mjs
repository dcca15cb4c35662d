#!/usr/bin/env node
// Markdown tables of a benchmark run, as docs/performance.md shows them.
//
//   node bench/tables.mjs [docs/bench/results.json]     # prints them; bench.mjs writes docs/bench/tables.md
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const SIZE = { 100: '100 B', 10000: '10 KB', 1000000: '1 MB', 10000000: '10 MB' };

function num(x) {
  if (x === undefined) return '–';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

const ratio = (a, b) => (a === undefined || b === undefined ? '–' : `${(a / b).toFixed(2)}x`);

/** One table per log level: latency, ratios against the peer, the floor, the supervisor's CPU. */
export function tables({ results }) {
  let md = '';
  for (const level of [...new Set(results.map((r) => r.level))]) {
    md += `**ASYA_LOG_LEVEL=${level}**\n\n`;
    md += '| size | payload | peer p50 / p99 ms | ours p50 / p99 ms | ours+orjson p50 / p99 ms | p50 ratio (json / orjson) | throughput ratio (json / orjson) | floor json / orjson ms | supervisor CPU ms/msg |\n';
    md += '|---|---|---|---|---|---|---|---|---|\n';
    for (const row of results.filter((r) => r.level === level)) {
      const { peer, ours, 'ours+orjson': fast } = row.runtimes;
      const lat = (rt) => (rt ? `${num(rt.p50)} / ${num(rt.p99)}` : '–');
      md += `| ${SIZE[row.size] ?? `${row.size} B`} | ${row.shape} | ${lat(peer)} | ${lat(ours)} | ${lat(fast)} `;
      md += `| ${ratio(ours?.p50, peer?.p50)} / ${ratio(fast?.p50, peer?.p50)} `;
      md += `| ${ratio(ours?.throughput, peer?.throughput)} / ${ratio(fast?.throughput, peer?.throughput)} `;
      md += `| ${num(row.floor.json)} / ${num(row.floor.orjson)} | ${num(ours?.cpuMsPerMsg)} |\n`;
    }
    md += '\n';
  }
  return md;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? new URL('../docs/bench/results.json', import.meta.url);
  process.stdout.write(tables(JSON.parse(fs.readFileSync(file, 'utf8'))));
}
