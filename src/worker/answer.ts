/**
 * From how a call ended to what the client is sent and what is logged: one pure function per ending,
 * no I/O. The supervisor writes the bytes and the line; the table in test/internals/answer.test.ts holds the rules.
 */
import type { RequestEnvelope } from '../envelope/envelope.js';
import { envelopeModeResponse, payloadModeResponse } from '../envelope/envelope.js';
import { messageLogFields } from '../envelope/trace.js';
import { type ErrorCode, WireError, wireError } from '../errors.js';
import { errorResponse, frameChunks } from '../socket/framing.js';
import type { CallOutcome } from './channel.js';
import type { WorkerPolicy } from './policy.js';

/** How a message ended: 'ok', or the wire error code it was answered with. */
export type MessageOutcome = 'ok' | ErrorCode;

export interface AnswerLine {
  level: 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string;
}

export interface Answer {
  /** The frame, ready to write. */
  chunks: Buffer[];
  outcome: MessageOutcome;
  /** A success: how many outputs (its 'message handled' line is the supervisor's, written after the answer). */
  outputs?: number;
  /** A failure's line. */
  line?: AnswerLine;
  /** A line for a success that is logged once per load of the Python process (`once` names it). */
  notice?: AnswerLine & { once: string };
}

export interface AnswerContext {
  envelope: RequestEnvelope;
  /** Milliseconds since the request arrived, for the line. */
  ms: number;
  validate: boolean;
  timeLimit: WorkerPolicy['timeLimit'];
}

/** Python answered: the response, or the error its reply means. */
export function answerFromOutcome(outcome: CallOutcome, at: AnswerContext): Answer {
  try {
    switch (outcome.kind) {
      case 'payloads':
        return {
          chunks: frameChunks(payloadModeResponse(at.envelope, outcome.payloads)),
          outcome: 'ok',
          outputs: outcome.payloads.length,
        };
      case 'envelopes': {
        let unmoved: number | null = null;
        const n = outcome.outputs.length;
        const body = envelopeModeResponse(at.envelope, outcome.outputs, at.validate, (i) => (unmoved ??= i));
        const answer: Answer = { chunks: frameChunks(body), outcome: 'ok', outputs: n };
        if (unmoved !== null) answer.notice = unmovedRoute(at, unmoved, n);
        return answer;
      }
      case 'raised': {
        const failure = wireError.processing(outcome.message, outcome.type, outcome.traceback);
        return failed(failure, at, 'error', `handler raised ${outcome.type}: ${outcome.message}`, {
          type: outcome.type,
          traceback: outcome.traceback || undefined,
        });
      }
      case 'unencodable':
        // A traceback when the handler's own code ran (and raised) during the encoding; none otherwise.
        return failed(
          wireError.processing(outcome.message, outcome.type, outcome.traceback),
          at,
          'error',
          outcome.message,
          { type: outcome.type, traceback: outcome.traceback || undefined },
        );
      case 'bad_input': {
        const failure = wireError.parsing(
          outcome.field === 'payload'
            ? `invalid JSON in field 'payload': ${outcome.message}`
            : `the envelope cannot be read by Python's json: ${outcome.message}`,
          outcome.type,
        );
        return failed(failure, at, 'warn', failure.message, { type: outcome.type });
      }
      case 'timed_out': {
        const { softMs, killGraceMs } = at.timeLimit;
        const failure = wireError.interrupted((softMs ?? 0) / 1000, killGraceMs / 1000, outcome);
        return failed(failure, at, 'error', failure.message, { type: outcome.type, traceback: outcome.traceback });
      }
    }
  } catch (err) {
    const failure =
      err instanceof WireError
        ? err
        : wireError.processing(`could not build the response: ${(err as Error).message}`, 'RuntimeError');
    return failed(failure, at, 'error', failure.message);
  }
}

/**
 * An envelope-mode output whose `route.current` did not move: the sidecar sends it back to this same
 * actor, a loop unless that is meant. A warning, once per load (`once`), not an error.
 */
function unmovedRoute(at: AnswerContext, index: number, n: number): AnswerLine & { once: string } {
  const { id, headers, route } = at.envelope;
  const actor = route.actors[route.current];
  return {
    once: 'route_unmoved',
    level: 'warn',
    fields: { ...messageLogFields({ id, headers }), output: index, current: route.current, actor },
    msg:
      `output envelope[${index}/${n}] keeps route.current=${route.current} (actor ${JSON.stringify(actor)}, this one): ` +
      'the sidecar sends it back to this same actor; move it on with route["current"] += 1 unless that loop is ' +
      'meant (this warning: once per Python process)',
  };
}

/** The Python process died during the call (the hard time limit killed it, or it crashed). */
export function answerFromDeath(
  death: { reason: string; exitCode: number | null; signal: string | null; stderrTail: string },
  at: AnswerContext,
): Answer {
  const { softMs, killGraceMs } = at.timeLimit;
  const failure =
    death.reason === 'timeout'
      ? wireError.timeout((softMs ?? 0) / 1000, killGraceMs / 1000)
      : wireError.crashed(death.exitCode, death.signal, death.stderrTail);
  return failed(failure, at, 'error', failure.message);
}

/** The envelope's deadline had passed `missedSeconds` ago when the message was to be handled. */
export function answerPastDeadline(deadline: string, missedSeconds: number, at: AnswerContext): Answer {
  const failure = wireError.deadlineExceeded(deadline, missedSeconds);
  return failed(failure, at, 'warn', failure.message);
}

function failed(
  failure: WireError,
  at: AnswerContext,
  level: AnswerLine['level'],
  msg: string,
  extra?: Record<string, unknown>,
): Answer {
  const { id, headers } = at.envelope;
  return {
    chunks: errorResponse(failure),
    outcome: failure.code,
    line: { level, msg, fields: { ...messageLogFields({ id, headers }), outcome: failure.code, ms: at.ms, ...extra } },
  };
}
