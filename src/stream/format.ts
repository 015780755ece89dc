/** The streaming formats the bridge recognises, and how each one carries an error to the client. */
import type { StreamFormat } from "../core/answer.ts";
import type { BridgeError } from "../core/errors.ts";

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

/** An SSE comment: ignored by every SSE parser, but keeps idle-timeouts of load balancers from firing. */
export const KEEPALIVE_COMMENT: Uint8Array = encoder.encode(": keep-alive\n\n");
