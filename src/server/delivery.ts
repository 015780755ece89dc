/**
 * What the proxy step made of one request, for the access log: returned with the response by the handler, from
 * what the answer and respond() returned. The steps before it hand each other the request; nothing else is shared.
 */
import type { CacheOutcome } from "../core/answer.ts";
import type { RelayOutcome } from "../stream/relay.ts";

/** How the answer's body went out. */
export interface Sent {
  readonly bytes: number;
  /** For a streamed answer: how the stream ended. */
  readonly stream?: RelayOutcome;
  /** The code of the error a stream ended with, if any. */
  readonly error?: string;
}

export interface Delivery {
  readonly cache?: CacheOutcome;
  readonly upstreamStatus?: number;
  /** How long the request waited for an upstream slot, in ms. */
  readonly queuedMs?: number;
  /** How the body went out: known at once for a whole body; for a stream, when its last byte went out. */
  readonly sent: Sent | Promise<Sent>;
}

/** A response, and what the access log is told of how it goes out (nothing for the bridge's own answers). */
export interface Answered {
  readonly response: Response;
  readonly delivery?: Delivery;
}
