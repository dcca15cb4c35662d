/**
 * Which message a log line is about: the envelope's id, and the trace id its headers carry
 * (`trace_id`, or the trace-id field of a W3C `traceparent`), read from the headers' bytes.
 */
import { isStringAt, lastMember, type ObjectScan, scanObject } from './json-scan.js';

export interface MessageContext {
  id: string | undefined;
  /** Raw JSON bytes of the request's `headers` (already checked by parseRequest). */
  headers: Buffer | undefined;
}

export interface MessageLogFields {
  id?: string;
  trace_id?: string;
}

/** `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>` (W3C Trace Context, version 00 and later). */
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/i;

export function traceIdOf(headers: Buffer | undefined): string | undefined {
  if (headers === undefined || headers[0] !== 0x7b) return undefined;
  let scan: ObjectScan | null;
  try {
    scan = scanObject(headers, 0, headers.length, { depth: 2, validated: true });
  } catch {
    return undefined; // validation off: whatever the headers are, they only cost the log its trace id
  }
  if (scan === null) return undefined;
  const direct = lastMember(scan.members, 'trace_id');
  if (direct && isStringAt(headers, direct)) {
    const text = stringAt(headers, direct.start, direct.end);
    if (text) return text;
  }
  const parent = lastMember(scan.members, 'traceparent');
  if (parent && isStringAt(headers, parent)) {
    const m = TRACEPARENT.exec(stringAt(headers, parent.start, parent.end) ?? '');
    if (m?.[1]) return m[1].toLowerCase();
  }
  return undefined;
}

function stringAt(buf: Buffer, start: number, end: number): string | undefined {
  try {
    const value: unknown = JSON.parse(buf.toString('utf8', start, end));
    return typeof value === 'string' ? value.slice(0, 256) : undefined;
  } catch {
    return undefined;
  }
}

export function messageLogFields({ id, headers }: MessageContext): MessageLogFields {
  const fields: MessageLogFields = {};
  if (id !== undefined) fields.id = id;
  const traceId = traceIdOf(headers);
  if (traceId !== undefined) fields.trace_id = traceId;
  return fields;
}
