/**
 * An answer on its way to a client, whoever made it: the upstream (live), a flight the request joined, the
 * cache (a replay) or an async job. The last step (server/respond.ts) turns it into the client's response.
 */
import type { BridgeError } from "./errors.ts";

/** The streaming formats the bridge recognises (stream/format.ts reads them from a content type). */
export type StreamFormat = "sse" | "ndjson";

/** How a cacheable request was answered: sent as `X-Cache`, logged and counted. */
export type CacheOutcome = "HIT-MEMORY" | "HIT-REDIS" | "HIT-DISK" | "MISS" | "BYPASS" | "COALESCED";

export interface Answer {
  readonly status: number;
  /** The client's copy of the response headers; respond() may add to them. */
  readonly headers: Headers;
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
