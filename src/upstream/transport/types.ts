/** What a transport is given and gives back: the seam between the upstream client and the wire. */
import type { Cancellation } from "../../core/time.ts";

export interface UpstreamRequestInit {
  method: string;
  /** The client's headers: the transport sends only the end-to-end ones (upstream/headers.ts). */
  headers: Headers;
  body: Uint8Array<ArrayBuffer> | null;
  cancellation: Cancellation;
  /**
   * The upstream credentials: undefined passes the client's own on; null removes them; a string is sent as the
   * `Authorization` value in their place (shared mode).
   */
  credentials?: string | null;
}

/** An upstream response; its body is decoded, and its headers are the end-to-end ones to pass on. */
export interface UpstreamReply {
  readonly response: Response;
  /**
   * The whole body, when it is already in memory: the proxy can look at it (the think filter checks it for
   * tags) and send it on without reading the response's stream.
   */
  readonly complete?: Uint8Array<ArrayBuffer>;
  /** The body ends when the upstream closes the connection: a cut cannot be told from the end (never cached). */
  readonly closeFramed?: boolean;
}

/** Sends one request upstream. */
export type UpstreamFetch = (url: string, init: UpstreamRequestInit) => Promise<UpstreamReply>;
