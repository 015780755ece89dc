/**
 * The request as the proxy steps see it: read and validated. It is never changed in place: a step that changes
 * it (the Lua request hook) makes a new one.
 */
import { InvalidRequest } from "./errors.ts";
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
  /** The client's tenant (its access-key label in shared mode); answers are cached per tenant. */
  readonly tenant?: string;
  /** Aborts when the client goes away. */
  readonly cancellation: Cancellation;
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number;
}

const decoder = new TextDecoder();

/** The JSON object a request body of a JSON endpoint holds; a 400 for anything else. */
export function parseJsonObject(body: Uint8Array | null): Record<string, unknown> {
  if (!body) {
    throw new InvalidRequest("Request body is empty: this endpoint expects a JSON object.", "invalid_json");
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(body));
  } catch (error) {
    throw new InvalidRequest(`Request body is not valid JSON: ${(error as Error).message}`, "invalid_json");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidRequest("Request body must be a JSON object.", "invalid_json");
  }
  return value as Record<string, unknown>;
}
