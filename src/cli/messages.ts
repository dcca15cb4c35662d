/**
 * What the CLI's `call` and `send` share: reading messages (argument, --payload, --file, stdin),
 * wrapping payloads in envelopes, sending them through the socket and printing answers.
 */
import fs from 'node:fs';
import { parseSeconds, SECONDS_EXPECTED } from '../config.js';
import { JsonScanError } from '../envelope/json-scan.js';
import { exchange } from '../socket/client.js';
import { layout } from './json-layout.js';
import { answerElements, InvalidMessage, messageDepth, payloadOf, splitMessages, wrapPayload } from './json-text.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The options both commands take for what to send (parseArgs descriptors). */
export const messageOptions = {
  payload: { type: 'string', multiple: true },
  file: { type: 'string' },
  envelope: { type: 'boolean', default: false },
  route: { type: 'string', default: 'actor' },
  timeout: { type: 'string' },
} as const;

/** What `call --help` and `send --help` say of the messages and answers: both read and print them alike. */
export const messagesHelp = `JSON is a message; "-" or no message at all reads stdin (one JSON value or JSON lines). Messages go in
this order: the JSON arguments, then each --payload, then --file's.
A message reaches the handler as the text you gave, read by Python's json.loads (9007199254740993, 1.0,
-0.0, escapes and repeated keys as Python reads them; NaN and Infinity are refused, as the runtime
refuses them). Answers are printed as the runtime wrote them: one line each, indented on a terminal,
values untouched (1.0, -0.0 and 2**70 print as Python encoded them).`;

/** The socket could not be reached or closed without an answer (`send` exits 5 on it). */
export class NoAnswerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoAnswerError';
  }
}

export interface MessageSource {
  positionals: string[];
  payloads?: string[];
  file?: string;
}

/**
 * Every message, in order, as the bytes the user gave: a text that is one JSON value is one message;
 * otherwise each line with a value on it is one (JSON lines), so `cat requests.jsonl | asya-runtime
 * call ...` sends them all. A payload is checked at its depth inside the envelope (`asEnvelope` false).
 */
export function readMessages(source: MessageSource, what: string, asEnvelope: boolean): Buffer[] {
  const texts: Array<{ text: Buffer; from: string }> = [];
  for (const p of source.positionals)
    texts.push(p === '-' ? { text: readStdin(), from: 'stdin' } : { text: Buffer.from(p), from: 'the argument' });
  for (const p of source.payloads ?? []) texts.push({ text: Buffer.from(p), from: '--payload' });
  if (source.file !== undefined) {
    let text: Buffer;
    try {
      text = fs.readFileSync(source.file);
    } catch (err) {
      throw new UsageError(`cannot read --file ${source.file}: ${(err as Error).message}`);
    }
    texts.push({ text, from: source.file });
  }
  if (texts.length === 0) {
    if (process.stdin.isTTY)
      throw new UsageError(`no ${what} given: pass it as an argument, with --payload or --file, or on stdin`);
    texts.push({ text: readStdin(), from: 'stdin' });
  }
  const depth = messageDepth(asEnvelope);
  try {
    return texts.flatMap(({ text, from }) => splitMessages(text, from, depth));
  } catch (err) {
    if (err instanceof InvalidMessage) throw new UsageError(err.message);
    throw err;
  }
}

function readStdin(): Buffer {
  return fs.readFileSync(0);
}

export function parseRoute(route: string): string[] {
  const actors = route.split(',').map((a) => a.trim());
  if (actors.some((a) => a === ''))
    throw new UsageError(`--route ${JSON.stringify(route)} has an empty actor name; use a,b,c`);
  return actors;
}

/** Read as the runtime reads ASYA_*_TIMEOUT (config.ts), so a flag it accepts is never refused later under the variable's name. */
export function positiveSeconds(option: string, text: string): number {
  const ms = parseSeconds(text);
  if (ms === null) throw new UsageError(`${option} ${JSON.stringify(text)} is not valid: expected ${SECONDS_EXPECTED}`);
  return ms / 1000;
}

let counter = 0;

/**
 * What goes on the wire: a whole envelope as given, or a payload written into an envelope whose
 * route starts at the first actor, as the gateway would send it.
 */
export function requestOf(message: Buffer, asEnvelope: boolean, actors: readonly string[]): Buffer {
  return asEnvelope ? message : wrapPayload(message, `cli-${process.pid}-${++counter}`, actors);
}

/**
 * An answer as the runtime wrote it: one line (its whitespace between tokens, if any, removed),
 * indented on a terminal. Tokens are never re-encoded: the values are the ones Python encoded. (A
 * text that is not JSON, which the runtime never sends, is printed as it came.)
 */
export function printAnswer(answer: Buffer): void {
  let shown: Buffer;
  try {
    shown = layout(answer, process.stdout.isTTY ? '  ' : null);
  } catch (err) {
    if (!(err instanceof JsonScanError)) throw err;
    shown = answer;
  }
  process.stdout.write(Buffer.concat([shown, NEWLINE]));
}

const NEWLINE = Buffer.from('\n');

/**
 * `--payloads-only`: each output's payload on its own line, as the runtime wrote it (a handler that
 * returned nothing prints nothing), so answers can be piped on as they are; an error element is
 * printed whole.
 */
export function printPayloads(answer: Buffer): void {
  let texts: Buffer[];
  try {
    texts = answerElements(answer).map((element) => {
      const whole = answer.subarray(element.start, element.end);
      const payload = isErrorAnswer(whole) ? null : payloadOf(answer, element);
      return payload ? answer.subarray(payload.start, payload.end) : whole;
    });
  } catch (err) {
    if (!(err instanceof JsonScanError)) throw err;
    texts = [answer];
  }
  for (const text of texts) printAnswer(text);
}

/**
 * The sidecar treats an answer as failed when any element carries a non-empty `error` (JSON.parse
 * reads it well enough: only that string matters), or when it cannot read the answer at all.
 */
export function isErrorAnswer(answer: Buffer): boolean {
  let value: unknown;
  try {
    value = JSON.parse(answer.toString('utf8'));
  } catch {
    return true;
  }
  return (Array.isArray(value) ? value : [value]).some(
    (e) =>
      typeof e === 'object' &&
      e !== null &&
      typeof (e as { error?: unknown }).error === 'string' &&
      (e as { error: string }).error !== '',
  );
}

export interface SendOptions {
  timeoutMs?: number;
  /** How an answer is printed (default: printAnswer). */
  print?: (answer: Buffer) => void;
  /** Called after each answer is printed, with the time from sending the message to its whole answer. */
  answered?: (ms: number) => void;
}

/**
 * Send each message on its own connection, as the sidecar does, and print each answer as it
 * arrives. Resolves true when any answer was an error.
 */
export async function sendMessages(
  socket: string,
  messages: readonly Buffer[],
  asEnvelope: boolean,
  actors: readonly string[],
  options: SendOptions = {},
): Promise<boolean> {
  const { timeoutMs = 0, print = printAnswer, answered } = options;
  let failed = false;
  for (const message of messages) {
    const request = requestOf(message, asEnvelope, actors);
    let answer: Buffer;
    const sent = process.hrtime.bigint();
    try {
      answer = await exchange(socket, request, timeoutMs);
    } catch (err) {
      throw new NoAnswerError(`no answer from ${socket}: ${(err as Error).message}`);
    }
    const ms = Number(process.hrtime.bigint() - sent) / 1e6;
    print(answer);
    answered?.(ms);
    failed ||= isErrorAnswer(answer);
  }
  return failed;
}
