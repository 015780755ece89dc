/** The streaming formats the bridge recognises, and how each one carries an error to the client. */
import type { BridgeError } from "../errors.ts";

export type StreamFormat = "sse" | "ndjson";

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
 * finished.
 */
export function errorEvent(format: StreamFormat, error: BridgeError): Uint8Array {
  if (format === "sse") return encoder.encode(`\n\nevent: error\ndata: ${JSON.stringify(error)}\n\n`);
  return encoder.encode(`\n${JSON.stringify({ error: error.message, code: error.code, done: true })}\n`);
}

/** An SSE comment: ignored by every SSE parser, but keeps idle-timeouts of load balancers from firing. */
export const KEEPALIVE_COMMENT: Uint8Array = encoder.encode(": keep-alive\n\n");
