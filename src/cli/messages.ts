/**
 * What the CLI's `call` and `send` share: reading messages (argument, --payload, --file, stdin),
 * wrapping payloads in envelopes, sending them through the socket and printing answers.
 */
import fs from 'node:fs';
import { parseSeconds, SECONDS_EXPECTED } from '../config.js';
import { exchange } from '../socket/client.js';

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
 * Every message, in order. A text that is one JSON value is one message; otherwise each non-empty
 * line must be one (JSON lines), so `cat requests.jsonl | asya-runtime call ...` sends them all.
 */
export function readMessages(source: MessageSource, what: string): unknown[] {
  const texts: Array<{ text: string; from: string }> = [];
  for (const p of source.positionals)
    texts.push(p === '-' ? { text: readStdin(), from: 'stdin' } : { text: p, from: 'the argument' });
  for (const p of source.payloads ?? []) texts.push({ text: p, from: '--payload' });
  if (source.file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(source.file, 'utf8');
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
  return texts.flatMap(({ text, from }) => parseMessages(text, from));
}

function readStdin(): string {
  return fs.readFileSync(0, 'utf8');
}

export function parseMessages(text: string, from: string): unknown[] {
  try {
    return [JSON.parse(text)];
  } catch (whole) {
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    if (lines.length < 2) throw new UsageError(`${from} is not valid JSON: ${(whole as Error).message}`);
    return lines.map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (err) {
        throw new UsageError(`${from}, line ${i + 1}, is not valid JSON: ${(err as Error).message}`);
      }
    });
  }
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

/** A payload becomes an envelope whose route starts at the first actor, as the gateway would send it. */
export function toEnvelope(message: unknown, asEnvelope: boolean, actors: string[]): unknown {
  if (asEnvelope) return message;
  return { id: `cli-${process.pid}-${++counter}`, route: { actors, current: 0 }, payload: message };
}

/** Pretty on a terminal, one compact line otherwise (so output can be piped to jq or a file). */
export function printAnswer(answer: unknown): void {
  process.stdout.write(`${process.stdout.isTTY ? JSON.stringify(answer, null, 2) : JSON.stringify(answer)}\n`);
}

/**
 * `--payloads-only`: each output's payload on its own line (a handler that returned nothing prints
 * nothing), so answers can be piped on as they are; an error element is printed whole.
 */
export function printPayloads(answer: unknown): void {
  for (const element of Array.isArray(answer) ? answer : [answer]) {
    const plain = typeof element === 'object' && element !== null && 'payload' in element && !isErrorAnswer([element]);
    printAnswer(plain ? (element as { payload: unknown }).payload : element);
  }
}

/** The sidecar treats an answer as failed when any element carries a non-empty `error`. */
export function isErrorAnswer(answer: unknown): boolean {
  return (
    Array.isArray(answer) &&
    answer.some(
      (e) =>
        typeof e === 'object' &&
        e !== null &&
        typeof (e as { error?: unknown }).error === 'string' &&
        (e as { error: string }).error !== '',
    )
  );
}

export interface SendOptions {
  timeoutMs?: number;
  /** How an answer is printed (default: printAnswer). */
  print?: (answer: unknown) => void;
  /** Called after each answer is printed, with the time from sending the message to its whole answer. */
  answered?: (ms: number, answer: unknown) => void;
}

/**
 * Send each message on its own connection, as the sidecar does, and print each answer as it
 * arrives. Resolves true when any answer was an error.
 */
export async function sendMessages(
  socket: string,
  messages: unknown[],
  asEnvelope: boolean,
  actors: string[],
  options: SendOptions = {},
): Promise<boolean> {
  const { timeoutMs = 0, print = printAnswer, answered } = options;
  let failed = false;
  for (const message of messages) {
    const request = Buffer.from(JSON.stringify(toEnvelope(message, asEnvelope, actors)));
    let raw: Buffer;
    const sent = process.hrtime.bigint();
    try {
      raw = await exchange(socket, request, timeoutMs);
    } catch (err) {
      throw new NoAnswerError(`no answer from ${socket}: ${(err as Error).message}`);
    }
    const ms = Number(process.hrtime.bigint() - sent) / 1e6;
    const answer = JSON.parse(raw.toString('utf8')) as unknown;
    print(answer);
    answered?.(ms, answer);
    failed ||= isErrorAnswer(answer);
  }
  return failed;
}
