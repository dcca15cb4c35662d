/**
 * Envelope rules: pure functions from request bytes to a checked envelope, and from handler
 * results to response bytes. The payload stays raw JSON bytes throughout: it is sliced out of
 * the request and spliced into the response, never parsed or re-stringified here.
 */
import { isUtf8 } from 'node:buffer';
import { JsonScanError, describeJsonStart, scanObjectMembers } from './json-scan.js';
import { WireError, wireError } from './errors.js';
import { lengthPrefix } from './framing.js';

export interface Route {
  actors: string[];
  current: number;
  /** Fields the runtime does not know (e.g. `metadata`) travel on unchanged. */
  [field: string]: unknown;
}

export interface RequestEnvelope {
  /** Raw JSON bytes of `payload`, a slice of the request frame. */
  payload: Buffer;
  /** `route`, with `current` filled in (missing means 0). */
  route: Route;
  /** Raw JSON bytes of `headers`, when the request had them. */
  headers: Buffer | undefined;
  id: string | undefined;
  /** Every member except `payload`, parsed, `route` normalised: what envelope-mode handlers see. */
  meta: Record<string, unknown>;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON type names, worded for people who write Python. */
function typeName(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/**
 * The structural rules every envelope obeys, incoming or outgoing. Returns the first broken
 * rule, or null. `route.current` must already be normalised (see `normaliseRoute`).
 */
export function envelopeProblem(env: JsonObject, hasPayload: boolean): string | null {
  if (!hasPayload) return "missing required field 'payload'";
  if (!('route' in env)) return "missing required field 'route'";
  const route = env.route;
  if (!isObject(route)) return `field 'route' must be an object, got ${typeName(route)}`;
  const actors = route.actors;
  if (!Array.isArray(actors)) return `field 'route.actors' must be an array, got ${typeName(actors)}`;
  if (actors.length === 0) return "field 'route.actors' must not be empty";
  const bad = actors.findIndex((a) => typeof a !== 'string');
  if (bad >= 0) return `route.actors[${bad}] must be a string, got ${typeName(actors[bad])}`;
  const current = route.current;
  if (typeof current !== 'number' || !Number.isInteger(current)) {
    return `field 'route.current' must be an integer, got ${typeName(current)}`;
  }
  if (current < 0 || current > actors.length) {
    return `route.current=${current} is out of range for ${actors.length} actors (allowed 0..${actors.length})`;
  }
  if ('headers' in env && !isObject(env.headers)) return `field 'headers' must be an object, got ${typeName(env.headers)}`;
  if ('id' in env && typeof env.id !== 'string') return `field 'id' must be a string, got ${typeName(env.id)}`;
  return null;
}

/** A missing `route.current` means 0 (the sidecar may omit it). */
function normaliseRoute(env: JsonObject): void {
  const route = env.route;
  if (isObject(route) && !('current' in route)) env.route = { ...route, current: 0 };
}

function parseMember(frame: Buffer, name: string, start: number, end: number): unknown {
  try {
    return JSON.parse(frame.toString('utf8', start, end));
  } catch (err) {
    throw wireError.parsing(`invalid JSON in field '${name}': ${(err as Error).message}`, 'JSONDecodeError');
  }
}

/**
 * Turn a request frame into an envelope, or throw a `msg_parsing_error`. With validation off,
 * only what the runtime needs to work is checked (an object with a payload and a route).
 */
export function parseRequest(frame: Buffer, validate: boolean): RequestEnvelope {
  if (frame.length === 0) throw wireError.parsing('empty request frame: expected a JSON envelope', 'EmptyFrame');
  if (!isUtf8(frame)) throw wireError.parsing('request frame is not valid UTF-8', 'UnicodeDecodeError');
  let members;
  try {
    members = scanObjectMembers(frame);
  } catch (err) {
    if (err instanceof JsonScanError) throw wireError.parsing(`invalid JSON: ${err.message}`, 'JSONDecodeError');
    throw err;
  }
  if (members === null) {
    throw wireError.parsing(`envelope must be a JSON object, got ${describeJsonStart(frame)}`);
  }
  const meta: JsonObject = {};
  let payload: Buffer | undefined;
  let headers: Buffer | undefined;
  for (const [name, { start, end }] of members) {
    if (name === 'payload') {
      payload = frame.subarray(start, end);
      continue;
    }
    meta[name] = parseMember(frame, name, start, end);
    if (name === 'headers') headers = frame.subarray(start, end);
  }
  normaliseRoute(meta);
  const problem = validate
    ? envelopeProblem(meta, payload !== undefined)
    : payload === undefined
      ? "missing required field 'payload'"
      : isObject(meta.route)
        ? null
        : `field 'route' must be an object, got ${typeName(meta.route)}`;
  if (problem !== null || payload === undefined) throw wireError.parsing(`invalid envelope: ${problem}`);
  const route = meta.route as Route;
  if (!Number.isInteger(route.current)) route.current = 0;
  return { payload, route, headers, id: typeof meta.id === 'string' ? meta.id : undefined, meta };
}

/**
 * The route rule of envelope mode: the processed prefix `actors[0..current]` (the current actor
 * included) must be unchanged; later actors and `current` itself may change.
 */
export function routeProblem(input: Route, output: Route): string | null {
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

/** Joins the output envelopes, each a list of chunks, into the chunks of one JSON array. */
function arrayChunks(envelopes: Buffer[][]): Buffer[] {
  if (envelopes.length === 0) return [EMPTY_ARRAY];
  const chunks: Buffer[] = [OPEN];
  envelopes.forEach((env, i) => {
    if (i > 0) chunks.push(COMMA);
    chunks.push(...env);
  });
  chunks.push(CLOSE);
  return chunks;
}

/** Payload mode: each returned payload becomes `{route: current+1, headers?, payload}`. */
export function payloadModeResponse(input: RequestEnvelope, payloads: Buffer[]): Buffer[] {
  const route = JSON.stringify({ ...input.route, current: input.route.current + 1 });
  const headers = input.headers ? `,"headers":${input.headers.toString('utf8')}` : '';
  const head = Buffer.from(`{"route":${route}${headers},"payload":`);
  return arrayChunks(payloads.map((p) => [head, p, END]));
}

/** One envelope-mode output as the shim sends it: everything but the payload, and the payload. */
export type EnvelopeOutput = [meta: Buffer, payload: Buffer | null];

/**
 * Envelope mode: check every output against the envelope rules and the route rule, keep
 * `id`, `parent_id`, `route`, `headers`, `payload`. With validation off, outputs pass as returned.
 */
export function envelopeModeResponse(input: RequestEnvelope, outputs: EnvelopeOutput[], validate: boolean): Buffer[] {
  const n = outputs.length;
  return arrayChunks(
    outputs.map(([metaJson, payload], i) => {
      if (!validate) return passThrough(metaJson, payload);
      const meta: unknown = JSON.parse(metaJson.toString('utf8'));
      const fail = (problem: string): WireError =>
        wireError.processing(`Invalid output envelope[${i}/${n}]: ${problem}`, 'ValueError');
      if (!isObject(meta)) throw fail(`must be a dict with 'payload' and 'route', got ${typeName(meta)}`);
      normaliseRoute(meta);
      const problem = envelopeProblem(meta, payload !== null) ?? routeProblem(input.route, meta.route as Route);
      if (problem !== null) throw fail(problem);
      let head = '{';
      for (const name of ['id', 'parent_id', 'route', 'headers']) {
        if (name in meta) head += `${JSON.stringify(name)}:${JSON.stringify(meta[name])},`;
      }
      return [Buffer.from(head + '"payload":'), payload as Buffer, END];
    }),
  );
}

function passThrough(meta: Buffer, payload: Buffer | null): Buffer[] {
  if (payload === null || meta[0] !== 0x7b) return [meta];
  const rest = meta.subarray(1, meta.length - 1);
  return [Buffer.from('{'), rest, Buffer.from(rest.length > 0 ? ',"payload":' : '"payload":'), payload, END];
}

/** A response body (the array) as one 4-byte big-endian length plus chunks, ready for writev. */
export function frameChunks(body: Buffer[]): Buffer[] {
  let length = 0;
  for (const chunk of body) length += chunk.length;
  return [lengthPrefix(length), ...body];
}

export function errorResponse(err: WireError): Buffer[] {
  return frameChunks([Buffer.from(JSON.stringify(err.toJSON()))]);
}
