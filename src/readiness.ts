/**
 * The ready file the pod's probe tests (`test -S sock && test -f runtime-ready`). It exists
 * exactly while the runtime can serve: socket listening, handler loaded, not shutting down.
 */
import fs from 'node:fs';
import type { Logger } from './logger.js';

export class ReadyFile {
  private present = false;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /** A ready file left by an earlier process says nothing about this one. */
  clearStale(): void {
    fs.rmSync(this.path, { force: true });
  }

  set(ready: boolean): void {
    if (ready === this.present) return;
    if (ready) {
      fs.writeFileSync(this.path, 'ready\n');
      this.log.info({ file: this.path }, 'ready: accepting messages');
    } else {
      fs.rmSync(this.path, { force: true });
      this.log.info({ file: this.path }, 'not ready: ready file removed');
    }
    this.present = ready;
  }
}
