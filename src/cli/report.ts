/** What `call` prints on stderr for people: its own lines, and the REPORT line after each answer. */
import { stderrSink } from '../log-sink.js';
import { peakResidentBytes } from '../proc-memory.js';
import type { ReadyInfo } from '../worker/worker.js';

/** A line for people on stderr, in order with the log lines (the same sink). */
export function say(line: string): void {
  stderrSink().write(`${line}\n`);
}

/** The REPORT line after each answer; the load time only on a freshly loaded process's first one. */
export class Reporter {
  /** The pid whose load time was already reported. */
  private reportedPid: number | null = null;

  /** `loaded`: what the Python process now serving reported (with --watch, of the runtime now running). */
  constructor(
    private readonly loaded: () => ReadyInfo | null,
    private readonly enabled: boolean,
  ) {}

  answered(ms: number): void {
    if (!this.enabled) return;
    const loaded = this.loaded();
    const fields = [`duration: ${ms.toFixed(2)} ms`];
    if (loaded && loaded.pid !== this.reportedPid) {
      fields.push(`init duration: ${loaded.load_ms} ms`);
      this.reportedPid = loaded.pid;
    }
    const peak = loaded ? peakResidentBytes(loaded.pid) : null;
    fields.push(`peak RSS: ${peak === null ? 'n/a' : `${(peak / 2 ** 20).toFixed(1)} MiB`}`);
    say(`REPORT  ${fields.join('  ')}`);
  }
}
