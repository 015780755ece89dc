/**
 * The request as the proxy steps see it: read and validated. It is never changed in place: a step that changes
 * it (the Lua request hook) makes a new one.
 */
import { createHash } from "node:crypto";
import type { Cancellation } from "./time.ts";
import type { EndpointKind } from "./endpoints.ts";

export interface ProxyRequest {
  readonly method: string;
  /** Path as the client sent it, such as `/v1/chat/completions`. */
  readonly path: string;
  /** Query string with its `?`, or empty. */
  readonly search: string;
  readonly headers: Headers;
  /** The whole body, kept so a retry can send the same bytes again. */
  readonly body: Uint8Array<ArrayBuffer> | null;
  /** Set for the JSON endpoints the bridge understands. */
  readonly kind?: EndpointKind;
  /** The parsed body of a JSON endpoint. */
  readonly json?: Readonly<Record<string, unknown>>;
  /** The JSON body holds a number a double cannot hold exactly: the cache key reads the numbers' text. */
  readonly inexactNumbers?: boolean;
  /**
   * Whose request it is: the access-key label, or `credential:` and a hash of the client's own credential
   * (never the credential itself); undefined when answers are shared (shared mode without access keys).
   * Answers, flights and async jobs are kept apart per tenant.
   */
  readonly tenant?: string;
  /** Aborts when the client goes away. */
  readonly cancellation: Cancellation;
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number;
}

/** Headers that carry a client's credentials: replaced or removed in shared mode and with access keys. */
export const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(["authorization", "x-api-key", "api-key"]);

/**
 * The tenant of a client known only by the credential it sends upstream: `credential:` and the first 128 bits of
 * a SHA-256 over its credential headers (access-key labels hold no colon, so the two never meet). Undefined
 * for a request without credentials.
 */
export function credentialTenant(headers: Headers): string | undefined {
  let material = "";
  for (const name of CREDENTIAL_HEADERS) {
    const value = headers.get(name);
    if (value !== null) material += `${name}\u0000${value}\u0000`;
  }
  if (!material) return undefined;
  return `credential:${createHash("sha256").update(material).digest("hex").slice(0, 32)}`;
}
