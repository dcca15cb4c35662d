#!/usr/bin/env node
// Markdown tables of a benchmark run, as docs/performance.md shows them.
//
//   node bench/tables.mjs [docs/bench/results.json]     # prints them; bench.mjs writes docs/bench/tables.md
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmt } from './stats.mjs';

/** 100 B, 10 KB, 1 MB. */
export function human(n) {
  return n >= 1e6 ? `${n / 1e6} MB` : n >= 1e3 ? `${n / 1e3} KB` : `${n} B`;
}

const ratio = (a, b) => (a === undefined || b === undefined ? '–' : `${(a / b).toFixed(2)}x`);

/**
 * One table per log level: latency of the peer, the design floor and ours, ours against the floor and
 * the peer, the in-process floor, the supervisor's CPU.
 */
export function tables({ results }) {
  let md = '';
  for (const level of [...new Set(results.map((r) => r.level))]) {
    md += `**ASYA_LOG_LEVEL=${level}**\n\n`;
    md +=
      '| size | payload | peer p50 / p99 ms | design floor p50 / p99 ms | ours p50 / p99 ms | ours+orjson p50 / p99 ms | ours / floor p50 / p99 | p50 ratio to peer (json / orjson) | throughput ratio to peer (json / orjson) | in-process json / orjson ms | supervisor CPU ms/msg |\n';
    md += '|---|---|---|---|---|---|---|---|---|---|---|\n';
    for (const row of results.filter((r) => r.level === level)) {
      const { peer, floor, ours, 'ours+orjson': fast } = row.runtimes;
      const inProcess = row.inProcess ?? row.floor; // results.json before the design floor called it `floor`
      const lat = (rt) => (rt ? `${fmt(rt.p50)} / ${fmt(rt.p99)}` : '–');
      md += `| ${human(row.size)} | ${row.shape} | ${lat(peer)} | ${lat(floor)} | ${lat(ours)} | ${lat(fast)} `;
      md += `| ${ratio(ours?.p50, floor?.p50)} / ${ratio(ours?.p99, floor?.p99)} `;
      md += `| ${ratio(ours?.p50, peer?.p50)} / ${ratio(fast?.p50, peer?.p50)} `;
      md += `| ${ratio(ours?.throughput, peer?.throughput)} / ${ratio(fast?.throughput, peer?.throughput)} `;
      md += `| ${fmt(inProcess.json)} / ${fmt(inProcess.orjson)} | ${fmt(ours?.cpuMsPerMsg)} |\n`;
    }
    md += '\n';
  }
  return md;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? new URL('../docs/bench/results.json', import.meta.url);
  process.stdout.write(tables(JSON.parse(fs.readFileSync(file, 'utf8'))));
}
