/**
 * An answer on its way to a client, whoever made it: the upstream (live), a flight the request joined, the
 * cache (a replay) or an async job. The last step (server/respond.ts) turns it into the client's response.
 */
import type { BridgeError } from "./errors.ts";

/** The streaming formats the bridge recognises (stream/format.ts reads them from a content type). */
export type StreamFormat = "sse" | "ndjson";

/** How a cacheable request was answered: sent as `X-Cache`, logged and counted. */
export type CacheOutcome = "HIT-MEMORY" | "HIT-REDIS" | "HIT-DISK" | "MISS" | "BYPASS" | "COALESCED";

/**
 * Response headers as name/value pairs (names in lower case). A Headers object costs more than the rest of a
 * cache hit: it is built, iterated and checked again for each response (docs/performance.md).
 */
export type HeaderPairs = [string, string][];

/** The pairs of `headers`. */
export function headerPairs(headers: Headers): HeaderPairs {
  const pairs: HeaderPairs = [];
  headers.forEach((value, name) => pairs.push([name, value]));
  return pairs;
}

/** Sets `name` (in lower case) to `value`, replacing the pairs already there. */
export function setHeader(pairs: HeaderPairs, name: string, value: string): void {
  for (let i = pairs.length - 1; i >= 0; i--) if (pairs[i][0] === name) pairs.splice(i, 1);
  pairs.push([name, value]);
}

/**
 * A response with these headers, appended one by one: Deno converts and checks a header list given to the
 * Response constructor several times more slowly (8 pairs: ~8 µs against ~2.5 µs; docs/performance.md).
 */
export function responseWith(
  body: BodyInit | null,
  init: { status: number; statusText?: string },
  headers: readonly (readonly [string, string])[],
): Response {
  const response = new Response(body, init);
  for (const [name, value] of headers) response.headers.append(name, value);
  return response;
}

/** The value of `name` (in lower case), or null. */
export function headerValue(pairs: HeaderPairs, name: string): string | null {
  for (const [key, value] of pairs) if (key === name) return value;
  return null;
}

export interface Answer {
  readonly status: number;
  /** The client's copy of the response headers; respond() may add to them. */
  readonly headers: HeaderPairs;
  readonly format?: StreamFormat;
  /** The whole body, or a stream of it still arriving. */
  readonly body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;
  /**
   * The body, when it is already in memory although `body` is a stream: it is then sent (or filtered) without
   * reading the stream.
   */
  readonly complete?: Uint8Array<ArrayBuffer>;
  /** The cache's outcome, when the cache is on. */
  readonly cache?: CacheOutcome;
  /** The body ends when the upstream closes the connection: a cut cannot be told from the end by framing. */
  readonly closeFramed?: boolean;
  /** How long the call waited for an upstream slot (`--max-inflight`), in ms. */
  readonly queuedMs?: number;
  /** The upstream's status, when this request (or the flight it joined) called the upstream. */
  readonly upstreamStatus?: number;
  /** The error to show the client for a failure while reading the body. */
  failure(error: unknown): BridgeError;
  /** Called once, when the body has been read, has failed, or was abandoned. */
  release(): void;
}
