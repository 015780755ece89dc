/**
 * A cached answer: the upstream's raw answer (a JSON body, or a whole SSE/NDJSON stream as it arrived), before
 * the think filter and plugins, so that changing them never serves a wrong answer. Encoded to bytes for the disk
 * tier as a length-prefixed JSON head followed by the body.
 */
import type { StreamFormat } from "../core/answer.ts";
import { parseObject } from "../core/json.ts";
import { streamMessages } from "../stream/messages.ts";

export interface CachedAnswer {
  readonly status: number;
  /** End-to-end response headers. */
  readonly headers: readonly [string, string][];
  /** The stream format the body was recorded in, or undefined for a whole body. */
  readonly format?: StreamFormat;
  readonly body: Uint8Array<ArrayBuffer>;
  /** Epoch ms when stored, and when it stops being served. */
  readonly storedAt: number;
  readonly expiresAt: number;
  /** Tokens the upstream spent on it (from its usage), counted as saved on every hit. */
  readonly tokens: number;
  /** The request's model, for a purge by model. */
  readonly model?: string;
}

type Head = Omit<CachedAnswer, "body">;

/**
 * The upstream headers a stored answer keeps, and so every replay carries: what describes the answer itself.
 * Per-request ones (`x-request-id`, `x-ratelimit-*`, `openai-processing-ms`, `date`, `set-cookie`) describe one
 * delivery and are never replayed to another request.
 */
const STORED_HEADERS = new Set(["content-type", "content-language"]);

/** An answer to store, as received, kept for `ttlMs` from now. */
export function storedAnswer(
  status: number,
  responseHeaders: Headers,
  format: StreamFormat | undefined,
  body: Uint8Array<ArrayBuffer>,
  ttlMs: number,
  model?: string,
): CachedAnswer {
  const headers: [string, string][] = [];
  responseHeaders.forEach((value, name) => STORED_HEADERS.has(name) && headers.push([name, value]));
  const now = Date.now();
  return {
    status,
    headers,
    format,
    body,
    storedAt: now,
    expiresAt: now + ttlMs,
    tokens: answerTokens(format, body),
    model,
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeAnswer(answer: CachedAnswer): Uint8Array<ArrayBuffer> {
  const { body, ...head } = answer;
  const headBytes = encoder.encode(JSON.stringify(head));
  const out = new Uint8Array(4 + headBytes.length + body.length);
  new DataView(out.buffer).setUint32(0, headBytes.length);
  out.set(headBytes, 4);
  out.set(body, 4 + headBytes.length);
  return out;
}

/** Decodes an encoded answer; undefined when the bytes are not one (a corrupt entry is a miss). */
export function decodeAnswer(bytes: Uint8Array<ArrayBuffer>): CachedAnswer | undefined {
  try {
    if (bytes.length < 4) return undefined;
    const headLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
    if (4 + headLength > bytes.length) return undefined;
    const head = JSON.parse(decoder.decode(bytes.subarray(4, 4 + headLength))) as Head;
    if (
      typeof head.status !== "number" || !Array.isArray(head.headers) || typeof head.expiresAt !== "number"
    ) {
      return undefined;
    }
    return { ...head, body: bytes.slice(4 + headLength) };
  } catch {
    return undefined;
  }
}

/**
 * Whether a recorded answer is complete: a stream must end with its final event (`data: [DONE]` for SSE, a
 * line with `"done": true` for NDJSON), a whole body must be JSON. A cut stream is never stored.
 */
export function isCompleteAnswer(format: StreamFormat | undefined, body: Uint8Array): boolean {
  if (!format) return parsesAsJson(decoder.decode(body));
  const last = streamMessages(format, body).at(-1);
  if (last === undefined) return false;
  // Chat streams end with [DONE]; Responses API streams with their response.completed event.
  if (format === "sse") return last === "[DONE]" || parseObject(last)?.type === "response.completed";
  return parseObject(last)?.done === true;
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Tokens an answer cost upstream, from its usage (OpenAI) or eval counts (Ollama); 0 when unknown. */
export function answerTokens(format: StreamFormat | undefined, body: Uint8Array): number {
  // Usage comes in a stream's last messages.
  const candidates = format ? streamMessages(format, body).slice(-3).reverse() : [decoder.decode(body)];
  for (const candidate of candidates) {
    try {
      const value = JSON.parse(candidate);
      if (value.usage?.total_tokens) return Number(value.usage.total_tokens);
      if (value.eval_count !== undefined || value.prompt_eval_count !== undefined) {
        return Number(value.eval_count ?? 0) + Number(value.prompt_eval_count ?? 0);
      }
    } catch {
      // not JSON: look further
    }
  }
  return 0;
}
