/**
 * `asya-runtime call`: the whole runtime for one-off use. The supervisor and the shim start on a
 * private socket, each message goes through that socket exactly as the sidecar would send it,
 * and the answers are printed. What works here works in the pod.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../logger.js';
import { startRuntime } from '../runtime/runtime.js';
import { handlerConfig, handlerEnvironment, handlerOptions, handlerOptionsHelp } from './environment.js';
import { messageOptions, parseRoute, positiveSeconds, readMessages, sendMessages } from './messages.js';

export const callHelp = `Usage: asya-runtime call --handler SPEC [options] [JSON | -]

Start the runtime on your handler, send it messages through its socket the way the sidecar does,
print the answers (the output envelopes), and stop. Logs, including what the handler prints, go to
stderr; answers go to stdout.

Options:
${handlerOptionsHelp}
  --payload JSON     a message (repeatable; all go to the same started handler)
  --file PATH        messages from a file: one JSON value, or JSON lines
  --envelope         messages are whole envelopes (default: payloads, wrapped in an envelope
                     whose route is --route, starting at its first actor)
  --route a,b,c      actors of that route (default: actor)
  --timeout SECONDS  handler time limit per message (default: $ASYA_HANDLER_TIMEOUT, else none)
  -h, --help

JSON is a message; "-" or no message at all reads stdin (one JSON value or JSON lines).
Exit code: 0 every answer ok, 1 an answer was an error, 2 bad usage or configuration,
3 Python not found, 4 the handler failed to load.

Examples:
  asya-runtime call --handler my_module.process '{"text": "hi"}'
  asya-runtime call --handler model.Classifier.predict --payload '{"x": 1}' --payload '{"x": 2}'
  cat requests.jsonl | asya-runtime call --handler router.route --mode envelope --envelope`;

export async function call(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...handlerOptions, ...messageOptions } });
  if (values.timeout !== undefined) positiveSeconds('--timeout', values.timeout);
  const actors = parseRoute(values.route);
  // Read everything first: a typo in a message should not cost a model load.
  const messages = readMessages({ positionals, payloads: values.payload, file: values.file }, 'message');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asya-call-'));
  try {
    const env = handlerEnvironment(values, dir);
    const config = handlerConfig(env);
    const log = createLogger(config.logLevel);
    const runtime = startRuntime(config, log, { env, extraPath: [process.cwd()] });
    const stop = () => void runtime.shutdown('interrupted');
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (!(await runtime.ready)) return await runtime.done;
    const failed = await sendMessages(config.socketPath, messages, values.envelope, actors);
    const code = await runtime.shutdown('call finished');
    return code !== 0 ? code : failed ? 1 : 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
