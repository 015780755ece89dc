/** The request as the proxy steps see it: read, validated, and free of hop-by-hop headers. */
import type { Cancellation } from "./time.ts";
import type { EndpointKind } from "./endpoints.ts";

export interface ProxyRequest {
  method: string;
  /** Path as the client sent it, such as `/v1/chat/completions`. */
  path: string;
  /** Query string with its `?`, or empty. */
  search: string;
  headers: Headers;
  /** The whole body, kept so a retry can send the same bytes again. */
  body: Uint8Array<ArrayBuffer> | null;
  /** Set for the JSON endpoints the bridge understands. */
  kind?: EndpointKind;
  /** The parsed body of a JSON endpoint. */
  json?: Record<string, unknown>;
  /** The client's tenant (its access-key label in shared mode); answers are cached per tenant. */
  tenant?: string;
  /** Aborts when the client goes away. */
  cancellation: Cancellation;
  /** `performance.now()` when the request arrived. */
  startedAt: number;
}
