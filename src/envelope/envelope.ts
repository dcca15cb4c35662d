/**
 * Envelope rules: pure functions from request bytes to a checked envelope, and from handler
 * results to response bytes.
 *
 * Nothing here turns input into JavaScript values and back. What the runtime forwards (route
 * members it does not own, `headers`, `id`, unknown members, the payload) stays byte spans of the
 * request frame or of what Python encoded, and leaves as the same bytes; the only edit ever made
 * is `route.current` (payload mode: the next actor; both modes: filled in when missing). The
 * rules read spans through json-scan.ts, so every key is data (`"__proto__"` too) and no value
 * is rounded.
 */
import { isUtf8 } from 'node:buffer';
import { type WireError, wireError } from '../errors.js';
import {
  describeValue,
  isArrayAt,
  isObjectAt,
  isStringAt,
  JsonScanError,
  lastMember,
  type Member,
  type ObjectScan,
  type Span,
  scanObject,
  validate,
} from './json-scan.js';

/** The route positions the rules need; everything else about the route stays bytes. */
export interface RoutePosition {
  actors: string[];
  current: number;
}

export interface Route extends RoutePosition {
  /** The route object's bytes, as received (or as Python encoded them). */
  bytes: Buffer;
  /** Where each `current` value sits in `bytes` (duplicates included); empty when `current` is missing. */
  currentSpans: Span[];
  /** Index of the route's closing brace in `bytes`, where a missing `current` is added. */
  close: number;
  /** The route has members before its closing brace. */
  hasMembers: boolean;
}

export interface RequestEnvelope {
  /** The whole request frame: the spans below point into it. */
  frame: Buffer;
  /** Raw JSON bytes of `payload`, a slice of the frame. */
  payload: Buffer;
  /** The payload holds an integer too wide for 64 bits (a 64-bit decoder such as orjson would round it). */
  wideIntegers: boolean;
  route: Route;
  /** Raw JSON bytes of `headers`, when the request had them. */
  headers: Buffer | undefined;
  /** The envelope id, for logs only. */
  id: string | undefined;
  /** Every top-level member in order, duplicates included. */
  members: Member[];
}

/**
 * The structural rules every envelope obeys, incoming or outgoing, read from the spans of its
 * members. Returns the first broken rule, or the route.
 */
function checkEnvelope(buf: Buffer, members: readonly Member[], hasPayload: boolean): string | Route {
  if (!hasPayload) return "missing required field 'payload'";
  const route = lastMember(members, 'route');
  if (route === undefined) return "missing required field 'route'";
  const parsed = readRoute(buf, route, true);
  if (typeof parsed === 'string') return parsed;
  const headers = lastMember(members, 'headers');
  if (headers && !isObjectAt(buf, headers))
    return `field 'headers' must be an object, got ${describeValue(buf, headers.start, headers.end)}`;
  const id = lastMember(members, 'id');
  if (id && !isStringAt(buf, id)) return `field 'id' must be a string, got ${describeValue(buf, id.start, id.end)}`;
  return parsed;
}

/** An integer as Python's json reads one: no fraction, no exponent. */
const INTEGER = /^-?(?:0|[1-9]\d*)$/;

/**
 * Reads `route` at `span` of `buf`. With `strict`, every rule on actors and current applies;
 * without (validation off), only an object is required and a current that is not a usable
 * integer counts as 0.
 */
function readRoute(buf: Buffer, span: Span, strict: boolean): string | Route {
  if (!isObjectAt(buf, span)) return `field 'route' must be an object, got ${describeValue(buf, span.start, span.end)}`;
  const bytes = buf.subarray(span.start, span.end);
  // Already validated as part of its envelope: this pass only locates the members.
  const scan = scanObject(bytes, 0, bytes.length, { depth: 2, validated: true });
  if (scan === null) return "field 'route' must be an object";
  const currentSpans: Span[] = [];
  for (const m of scan.members) if (m.key === 'current') currentSpans.push(m);
  // One object shape for every route (spreading a shared base was most of this function's cost)
  const result = (current: number): Route => ({
    bytes,
    currentSpans,
    close: scan.close,
    hasMembers: scan.members.length > 0,
    actors,
    current,
  });

  let actors: string[] = [];
  const actorsMember = lastMember(scan.members, 'actors');
  const actorsValue: unknown =
    actorsMember && isArrayAt(bytes, actorsMember)
      ? JSON.parse(bytes.toString('utf8', actorsMember.start, actorsMember.end))
      : undefined;
  if (Array.isArray(actorsValue) && actorsValue.every((a) => typeof a === 'string')) {
    actors = actorsValue as string[];
  } else if (strict) {
    if (!Array.isArray(actorsValue)) {
      return `field 'route.actors' must be an array, got ${actorsMember ? describeValue(bytes, actorsMember.start, actorsMember.end) : 'nothing'}`;
    }
    const bad = actorsValue.findIndex((a) => typeof a !== 'string');
    return `route.actors[${bad}] must be a string, got ${typeName(actorsValue[bad])}`;
  }
  if (strict && actors.length === 0) return "field 'route.actors' must not be empty";

  const currentMember = currentSpans[currentSpans.length - 1];
  if (currentMember === undefined) return result(0);
  const text = bytes.toString('latin1', currentMember.start, currentMember.end);
  if (!INTEGER.test(text)) {
    if (!strict) return result(0);
    const got = describeValue(bytes, currentMember.start, currentMember.end);
    return `field 'route.current' must be an integer, got ${got === 'a number' ? text : got}`;
  }
  // Anything longer than 15 digits is out of range for any real route and not a safe JS number.
  const current = text.replace('-', '').length > 15 ? (text.startsWith('-') ? -Infinity : Infinity) : Number(text);
  if (strict && (current < 0 || current > actors.length)) {
    return `route.current=${text} is out of range for ${actors.length} actors (allowed 0..${actors.length})`;
  }
  return result(Number.isSafeInteger(current) && current >= 0 ? current : 0);
}

/** JSON type names of parsed values, worded for people who write Python. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function parsingError(err: unknown): WireError {
  if (!(err instanceof JsonScanError)) throw err;
  return wireError.parsing(
    `invalid JSON${err.member === undefined ? '' : ` in field '${err.member}'`}: ${err.message}`,
    err.type,
  );
}

/**
 * Turn a request frame into an envelope, or throw a `msg_parsing_error`. With validation off,
 * only what the runtime needs to work is checked (an object with a payload and a route object).
 */
export function parseRequest(frame: Buffer, validation: boolean): RequestEnvelope {
  if (frame.length === 0) throw wireError.parsing('empty request frame: expected a JSON envelope', 'EmptyFrame');
  if (!isUtf8(frame)) throw wireError.parsing('request frame is not valid UTF-8', 'UnicodeDecodeError');
  let scan: ObjectScan | null;
  let route: string | Route;
  try {
    scan = scanObject(frame, 0, frame.length, { depth: 1, skipped: 'payload' });
    if (scan === null) throw wireError.parsing(`envelope must be a JSON object, got ${describeValue(frame)}`);
    const payloads = scan.members.filter((m) => m.key === 'payload');
    // Only the last payload reaches Python (which checks it); earlier duplicates are checked here.
    for (const p of payloads.slice(0, -1)) {
      try {
        validate(frame, p.start, p.end, 1);
      } catch (err) {
        if (err instanceof JsonScanError) err.member = 'payload';
        throw err;
      }
    }
    if (validation) {
      route = checkEnvelope(frame, scan.members, payloads.length > 0);
    } else {
      const r = lastMember(scan.members, 'route');
      route =
        payloads.length === 0
          ? "missing required field 'payload'"
          : r
            ? readRoute(frame, r, false)
            : "missing required field 'route'";
    }
  } catch (err) {
    throw parsingError(err);
  }
  if (typeof route === 'string') throw wireError.parsing(`invalid envelope: ${route}`);
  const payload = lastMember(scan.members, 'payload')!;
  const headers = lastMember(scan.members, 'headers');
  const id = lastMember(scan.members, 'id');
  return {
    frame,
    payload: frame.subarray(payload.start, payload.end),
    wideIntegers: scan.wideIntegers,
    route,
    headers: headers ? frame.subarray(headers.start, headers.end) : undefined,
    id: id && isStringAt(frame, id) ? (JSON.parse(frame.toString('utf8', id.start, id.end)) as string) : undefined,
    members: scan.members,
  };
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

/** `buf` with the spans of `edits` (sorted, not overlapping) replaced. */
function splice(buf: Buffer, edits: Edit[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const { start, end, text } of edits) {
    if (start > at) out.push(buf.subarray(at, start));
    out.push(Buffer.from(text));
    at = end;
  }
  if (at < buf.length) out.push(buf.subarray(at));
  return out;
}

/** Edits that set `current` in a route: each `current` value replaced, or the member added. */
function currentEdits(route: Route, offset: number, current: number): Edit[] {
  const text = String(current);
  if (route.currentSpans.length > 0) {
    return route.currentSpans.map((m) => ({ start: offset + m.start, end: offset + m.end, text }));
  }
  const at = offset + route.close;
  return [{ start: at, end: at, text: `${route.hasMembers ? ',' : ''}"current":${text}` }];
}

/** The route's bytes with `current` set (as chunks): the only change the runtime makes to a route. */
function routeWithCurrent(route: Route, current: number): Buffer[] {
  return splice(route.bytes, currentEdits(route, 0, current));
}

/**
 * What an envelope-mode (or ASYA_INCLUDE_METADATA) handler is given besides the payload: the
 * request's own text with every payload value replaced by `null` (the shim puts the decoded payload
 * back in its place, so key order and duplicates read exactly as json.loads of the request would)
 * and a missing `route.current` filled in as 0.
 */
export function handlerMeta(envelope: RequestEnvelope): Buffer {
  const edits: Edit[] = envelope.members
    .filter((m) => m.key === 'payload')
    .map((m) => ({ start: m.start, end: m.end, text: 'null' }));
  const { route } = envelope;
  if (route.currentSpans.length === 0) {
    edits.push(...currentEdits(route, route.bytes.byteOffset - envelope.frame.byteOffset, 0));
    edits.sort((a, b) => a.start - b.start);
  }
  return Buffer.concat(splice(envelope.frame, edits));
}

/**
 * The route rule of envelope mode: the processed prefix `actors[0..current]` (the current actor
 * included) must be unchanged; later actors and `current` itself may change.
 */
export function routeProblem(input: RoutePosition, output: RoutePosition): string | null {
  const keep = input.actors.slice(0, input.current + 1);
  const got = output.actors.slice(0, keep.length);
  const show = `input actors ${JSON.stringify(input.actors)} (current=${input.current}), output actors ${JSON.stringify(output.actors)} (current=${output.current})`;
  if (got.length < keep.length) {
    return `already-processed actors were erased: route.actors[0..${keep.length - 1}] must stay ${JSON.stringify(keep)}; ${show}`;
  }
  const changed = keep.findIndex((actor, i) => got[i] !== actor);
  if (changed < 0) return null;
  if (changed === input.current) {
    return `the current actor changed: route.actors[${changed}] must stay ${JSON.stringify(keep[changed])}, got ${JSON.stringify(got[changed])}; ${show}`;
  }
  return `an already-processed actor was modified: route.actors[${changed}] must stay ${JSON.stringify(keep[changed])}, got ${JSON.stringify(got[changed])}; ${show}`;
}

const OPEN = Buffer.from('[');
const CLOSE = Buffer.from(']');
const COMMA = Buffer.from(',');
const END = Buffer.from('}');
const EMPTY_ARRAY = Buffer.from('[]');
const PAYLOAD_FIRST = Buffer.from('"payload":');
const PAYLOAD_NEXT = Buffer.from(',"payload":');
const ROUTE_FIRST = Buffer.from('{"route":');
const HEADERS_NEXT = Buffer.from(',"headers":');
const ARRAY_ROUTE_FIRST = Buffer.from('[{"route":');
const END_ARRAY = Buffer.from('}]');

/** Joins the output envelopes, each a list of chunks, into the chunks of one JSON array. */
function arrayChunks(envelopes: Buffer[][]): Buffer[] {
  if (envelopes.length === 0) return [EMPTY_ARRAY];
  const chunks: Buffer[] = [OPEN];
  envelopes.forEach((env, i) => {
    if (i > 0) chunks.push(COMMA);
    for (const chunk of env) chunks.push(chunk);
  });
  chunks.push(CLOSE);
  return chunks;
}

/**
 * Payload mode: each returned payload becomes `{route: current+1, headers?, payload}`. The chunks
 * reference the request and the payloads; nothing is copied until the frame is (frameChunks).
 */
export function payloadModeResponse(input: RequestEnvelope, payloads: Buffer[]): Buffer[] {
  if (payloads.length === 0) return [EMPTY_ARRAY];
  // Everything before the payload, shared by every output: `{"route":...,"headers":...,"payload":`.
  const head = routeWithCurrent(input.route, input.route.current + 1);
  if (input.headers) head.push(HEADERS_NEXT, input.headers);
  head.push(PAYLOAD_NEXT);
  if (payloads.length === 1) return [ARRAY_ROUTE_FIRST, ...head, payloads[0]!, END_ARRAY];
  return arrayChunks(payloads.map((p) => [ROUTE_FIRST, ...head, p, END]));
}

/** One envelope-mode output as the shim sends it: everything but the payload, and the payload. */
export type EnvelopeOutput = [meta: Buffer, payload: Buffer | null];

/**
 * Envelope mode: check every output against the envelope rules and the route rule. Outputs leave
 * as Python encoded them (the payload appended to the rest), a missing `route.current` filled in
 * as 0. With validation off, outputs pass as returned. `onUnmoved` hears of each valid output whose
 * `current` is still the input's (not past the route's end): the sidecar sends it back to this actor.
 */
export function envelopeModeResponse(
  input: RequestEnvelope,
  outputs: EnvelopeOutput[],
  validation: boolean,
  onUnmoved?: (index: number) => void,
): Buffer[] {
  const n = outputs.length;
  return arrayChunks(
    outputs.map(([meta, payload], i) => {
      if (!validation) return withPayload([meta], meta, payload);
      const fail = (problem: string): WireError =>
        wireError.processing(`Invalid output envelope[${i}/${n}]: ${problem}`, 'ValueError');
      let scan: ObjectScan | null;
      try {
        scan = scanObject(meta, 0, meta.length, { depth: 1 });
      } catch (err) {
        throw fail(err instanceof JsonScanError ? err.message : String(err));
      }
      if (scan === null) throw fail(`must be a dict with 'payload' and 'route', got ${describeValue(meta)}`);
      const route = checkEnvelope(meta, scan.members, payload !== null);
      if (typeof route === 'string') throw fail(route);
      const problem = routeProblem(input.route, route);
      if (problem !== null) throw fail(problem);
      if (route.current === input.route.current && input.route.current < input.route.actors.length) onUnmoved?.(i);
      const chunks =
        route.currentSpans.length > 0
          ? [meta]
          : splice(meta, currentEdits(route, route.bytes.byteOffset - meta.byteOffset, 0));
      return withPayload(chunks, meta, payload);
    }),
  );
}

/** An encoded object (as chunks) with `"payload": payload` added before its closing brace. */
function withPayload(chunks: Buffer[], meta: Buffer, payload: Buffer | null): Buffer[] {
  if (payload === null || meta[0] !== 0x7b) return chunks;
  const last = chunks[chunks.length - 1]!;
  const empty = meta.length === 2;
  return [
    ...chunks.slice(0, -1),
    last.subarray(0, last.length - 1),
    empty ? PAYLOAD_FIRST : PAYLOAD_NEXT,
    payload,
    END,
  ];
}
