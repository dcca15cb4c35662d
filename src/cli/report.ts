/** What `call` prints on stderr for people: its own lines, and the REPORT line after each answer. */
import { stderrSink } from '../log-sink.js';
import { peakResidentBytes } from '../proc-memory.js';
import type { ReadyInfo } from '../worker/worker.js';

/** A line for people on stderr, in order with the log lines (the same sink). */
export function say(line: string): void {
  stderrSink().write(`${line}\n`);
}

export type ReportFormat = 'text' | 'json' | 'none';

export const isReportFormat = (value: string): value is ReportFormat =>
  value === 'text' || value === 'json' || value === 'none';

/**
 * The REPORT after each answer, as a line for people (`text`) or one JSON object for scripts (`json`);
 * the load time only on a freshly loaded process's first one.
 */
export class Reporter {
  /** The pid whose load time was already reported. */
  private reportedPid: number | null = null;

  /** `loaded`: what the Python process now serving reported (with --watch, of the runtime now running). */
  constructor(
    private readonly loaded: () => ReadyInfo | null,
    private readonly format: ReportFormat,
  ) {}

  answered(ms: number): void {
    if (this.format === 'none') return;
    const loaded = this.loaded();
    let initMs: number | null = null;
    if (loaded && loaded.pid !== this.reportedPid) {
      initMs = loaded.load_ms;
      this.reportedPid = loaded.pid;
    }
    const peak = loaded ? peakResidentBytes(loaded.pid) : null;
    if (this.format === 'json') {
      const fields = {
        report: true,
        duration_ms: Number(ms.toFixed(3)),
        init_duration_ms: initMs,
        peak_rss_bytes: peak,
        python_pid: loaded?.pid ?? null,
      };
      say(JSON.stringify(fields));
      return;
    }
    const fields = [`duration: ${ms.toFixed(2)} ms`];
    if (initMs !== null) fields.push(`init duration: ${initMs} ms`);
    fields.push(`peak RSS: ${peak === null ? 'n/a' : `${(peak / 2 ** 20).toFixed(1)} MiB`}`);
    say(`REPORT  ${fields.join('  ')}`);
  }
}
