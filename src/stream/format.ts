/** The streaming formats the bridge recognises, and how each one carries an error to the client. */
import type { StreamFormat } from "../core/answer.ts";
import type { BridgeError } from "../core/errors.ts";
import { parseObject } from "../core/json.ts";

export type { StreamFormat };

/** The stream format of a response by its content type, or undefined for a body that is not a stream. */
export function streamFormat(contentType: string | null): StreamFormat | undefined {
  if (!contentType) return undefined;
  const type = contentType.split(";", 1)[0].trim().toLowerCase();
  if (type === "text/event-stream") return "sse";
  if (type === "application/x-ndjson" || type === "application/jsonl" || type === "application/json-seq") {
    return "ndjson";
  }
  return undefined;
}

const encoder = new TextEncoder();

/**
 * The last message of a stream that failed after it started: an SSE `error` event (the OpenAI SDKs raise it as
 * an APIError) or an NDJSON line with `error` (what Ollama's own clients read), so a cut answer never looks
 * finished. `tail` is the end of what was sent so far: a message cut mid-line is ended first.
 */
export function errorEvent(
  format: StreamFormat,
  error: BridgeError,
  tail: Uint8Array = new Uint8Array(0),
): Uint8Array {
  if (format === "sse") {
    const end = tail.length === 0 || endsWith(tail, "\n\n") ? "" : endsWith(tail, "\n") ? "\n" : "\n\n";
    return encoder.encode(`${end}event: error\ndata: ${JSON.stringify(error)}\n\n`);
  }
  const end = tail.length === 0 || endsWith(tail, "\n") ? "" : "\n";
  return encoder.encode(`${end}${JSON.stringify({ error: error.message, code: error.code, done: true })}\n`);
}

function endsWith(bytes: Uint8Array, text: string): boolean {
  if (bytes.length < text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[bytes.length - text.length + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

const decoder = new TextDecoder();

/**
 * Whether the first bytes of an event stream look like one: its first line is a field (`data`, `event`, `id`,
 * `retry`), a comment, or a blank line. A JSON error body or an HTML page sent as `text/event-stream` is not.
 */
export function looksLikeSse(first: Uint8Array): boolean {
  const text = decoder.decode(first.subarray(0, 256)).replace(/^\uFEFF/, "").replace(/^[\r\n]+/, "");
  if (!text) return true;
  const line = text.split(/\r\n|\r|\n/, 1)[0];
  const field = /^[^:]*/.exec(line)![0];
  const complete = line.length < text.length || line.includes(":");
  return ["data", "event", "id", "retry", ""].some((name) =>
    complete ? field === name : name.startsWith(field)
  );
}

/**
 * Whether a stream's last bytes hold its final event: `data: [DONE]` or a Responses API terminal event (SSE), or
 * a line with `"done": true` (NDJSON). Only asked of a stream framed by the connection closing, where the end of
 * the bytes may be a cut.
 */
export function endsWithFinalEvent(format: StreamFormat, tail: string): boolean {
  const text = tail.trimEnd();
  if (format === "sse") {
    return /(^|\n)data: ?\[DONE\]$/.test(text) ||
      /"type":\s*"response\.(completed|failed|incomplete)"/.test(text);
  }
  return parseObject(text.slice(text.lastIndexOf("\n") + 1))?.done === true;
}

/** An SSE comment: ignored by every SSE parser, but keeps idle-timeouts of load balancers from firing. */
export const KEEPALIVE_COMMENT: Uint8Array = encoder.encode(": keep-alive\n\n");
