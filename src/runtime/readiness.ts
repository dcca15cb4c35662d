/**
 * The ready file the pod's probe tests (`test -S sock && test -f runtime-ready`). It exists
 * exactly while the runtime can serve: socket listening, handler loaded, not shutting down.
 *
 * Failures are FatalErrors (exit 5) that name the file and the errno: a ready file that cannot be
 * written keeps the pod out of the Service forever, and one that cannot be removed makes the probe
 * lie; either way Kubernetes restarting the container is the honest outcome.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ExitCode, FatalError } from '../errors.js';
import type { Logger } from '../logger.js';

export class ReadyFile {
  private present = false;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /**
   * A ready file left by an earlier process says nothing about this one. Called only once this
   * runtime owns the socket: before that, the file may belong to a runtime still serving.
   */
  clearStale(): void {
    try {
      fs.rmSync(this.path, { force: true });
    } catch (err) {
      throw this.fault('cannot remove the stale ready file', err);
    }
  }

  set(ready: boolean): void {
    if (ready === this.present) return;
    if (ready) {
      this.write();
      this.log.info({ file: this.path }, 'ready: accepting messages');
    } else {
      try {
        fs.rmSync(this.path, { force: true });
      } catch (err) {
        throw this.fault(
          'cannot remove the ready file',
          err,
          'the readiness probe would report ready while the runtime cannot serve',
        );
      }
      this.log.info({ file: this.path }, 'not ready: ready file removed');
    }
    this.present = ready;
  }

  /** Someone else removed the file while this runtime serves: put it back. Returns true if it did. */
  restoreIfMissing(): boolean {
    if (!this.present || fs.existsSync(this.path)) return false;
    this.write();
    this.log.warn(
      { file: this.path },
      'the ready file was removed by another process while the runtime is ready; restored it',
    );
    return true;
  }

  private write(): void {
    try {
      fs.writeFileSync(this.path, 'ready\n');
    } catch (err) {
      throw this.fault('cannot write the ready file', err, 'the pod would never become ready');
    }
  }

  private fault(what: string, err: unknown, consequence?: string): FatalError {
    const dir = path.dirname(this.path);
    const code = (err as NodeJS.ErrnoException).code;
    const gone = code === 'ENOENT' && !fs.existsSync(dir) ? ` (the socket directory ${dir} no longer exists)` : '';
    return new FatalError(
      ExitCode.socket,
      `${what} ${this.path}: ${(err as Error).message}${gone}${consequence ? `; ${consequence}` : ''}`,
      { file: this.path, errno: code },
    );
  }
}
