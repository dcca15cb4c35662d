/**
 * `asya-runtime check`: import the handler and instantiate its class in the Python it will run
 * under, then report. A pre-deploy gate for CI pipelines: the exit code says whether the pod
 * would start, the message says why not.
 */
import { parseArgs } from 'node:util';
import { ExitCode, FatalError } from '../errors.js';
import { createLogger, logFatal } from '../logger.js';
import { workerOptions } from '../runtime/runtime.js';
import { toFatal } from '../worker/errors.js';
import { PythonWorker, type ReadyInfo } from '../worker/worker.js';
import {
  handlerConfig,
  handlerEnvironment,
  handlerOptions,
  handlerOptionsHelp,
  LOCAL_PATH,
  onlyThroughWorkingDirectory,
} from './environment.js';

export const checkHelp = `Usage: asya-runtime check --handler SPEC [options]

Load the handler as the runtime will (find Python, import the module, instantiate the class with
ASYA_HANDLER_ARGS, check it can be called with one argument), say what kind of callable it is, call
its close() and report. Nothing is served. The module is found as \`call\` finds it; when that was
only through the current directory, which the deployed runtime does not search, a note says so.

Options:
${handlerOptionsHelp}
  -h, --help

Exit code: 0 the handler loads, 2 bad usage or configuration, 3 Python not found,
4 the handler failed to load (the message says why).

Example:
  asya-runtime check --handler model.Classifier.predict && echo deployable`;

export async function check(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: handlerOptions });
  const env = handlerEnvironment(values, null);
  const config = handlerConfig(env);
  const log = createLogger(config.logLevel, config.logFormat);
  try {
    // With ASYA_PRELOAD it loads as the template does, so what a template refuses (CUDA) shows here too.
    const worker = PythonWorker.spawn({
      ...workerOptions(config, env, log, LOCAL_PATH()),
      fork: config.preload ? 'template' : null,
    });
    let ready: ReadyInfo;
    try {
      ready = await worker.handshake();
    } catch (err) {
      throw toFatal(err, config);
    }
    await worker.stop(2000);
    process.stdout.write(
      `ok: ${config.handler} (${ready.callable}${ready.close ? ' with close()' : ''}, ${config.mode} mode) loaded in ${ready.load_ms} ms ` +
        `by Python ${ready.python} at ${ready.executable}${ready.codec ? `, JSON codec ${ready.codec}` : ''}\n`,
    );
    const note = onlyThroughWorkingDirectory(ready, env.PYTHONPATH);
    if (note) process.stderr.write(`${note}\n`);
    return ExitCode.ok;
  } catch (err) {
    if (!(err instanceof FatalError)) throw err;
    logFatal(log, err);
    return err.exitCode;
  }
}
