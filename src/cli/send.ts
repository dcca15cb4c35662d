/** `asya-runtime send`: one or more messages to a running runtime, exactly as the sidecar sends them. */
import { parseArgs } from 'node:util';
import { socketPathOf } from '../config.js';
import {
  messageOptions,
  messagesHelp,
  NoAnswerError,
  parseRoute,
  positiveSeconds,
  readMessages,
  sendMessages,
} from './messages.js';

export const sendHelp = `Usage: asya-runtime send [options] [JSON | -]

Send messages to a runtime that is already running, the way the sidecar does (one connection per
message, 4-byte length prefix), and print each answer.

Options:
  --socket PATH      the runtime's socket (default: as the runtime finds it: $ASYA_SOCKET_PATH,
                     else $ASYA_SOCKET_DIR/$ASYA_SOCKET_NAME, default /var/run/asya/asya-runtime.sock)
  --payload JSON     a message (repeatable)
  --file PATH        messages from a file: one JSON value, or JSON lines
  --envelope         messages are whole envelopes, sent as they are (default: payloads, wrapped
                     in an envelope whose route is --route)
  --route a,b,c      actors of the route around a payload (default: actor)
  --timeout SECONDS  give up waiting for an answer (default: no limit)
  -h, --help

${messagesHelp}
Exit code: 0 all answers ok, 1 an answer was an error, 2 bad usage, 5 the socket is unreachable.

Example:
  asya-runtime send --socket .asya/asya-runtime.sock '{"text": "hi"}'`;

export async function send(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { socket: { type: 'string' }, ...messageOptions },
  });
  const socket = values.socket ?? socketPathOf(process.env);
  const timeoutMs = values.timeout === undefined ? 0 : positiveSeconds('--timeout', values.timeout) * 1000;
  const actors = parseRoute(values.route);
  const messages = readMessages(
    { positionals, payloads: values.payload, file: values.file },
    'message',
    values.envelope,
  );
  try {
    return (await sendMessages(socket, messages, values.envelope, actors, { timeoutMs })) ? 1 : 0;
  } catch (err) {
    if (!(err instanceof NoAnswerError)) throw err;
    process.stderr.write(`asya-runtime send: ${err.message}\n`);
    return 5;
  }
}
