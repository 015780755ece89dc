/**
 * Every error the bridge itself answers with is one of these typed errors; `app.onError` turns them into the
 * error shape of the API the path belongs to, in one place: Ollama's `{"error":"message"}` on /api/*, OpenAI's
 * `{"error":{"message","type","code","param"}}` everywhere else.
 */

/** Which API's error shape a path's errors take. */
export type ErrorShape = "openai" | "ollama";

export function errorShapeOf(path: string): ErrorShape {
  return path === "/api" || path.startsWith("/api/") ? "ollama" : "openai";
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string; param: null };
}

export class BridgeError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    message: string,
    /** Extra response headers, such as `Retry-After`. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }

  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: null } };
  }

  /** The body in `shape`: Ollama's clients read `error` as a string and show "[object Object]" otherwise. */
  body(shape: ErrorShape): string {
    return shape === "ollama" ? JSON.stringify({ error: this.message }) : JSON.stringify(this);
  }

  toResponse(shape: ErrorShape = "openai"): Response {
    return new Response(this.body(shape), {
      status: this.status,
      headers: { "content-type": "application/json", ...this.headers },
    });
  }
}

export class InvalidRequest extends BridgeError {
  constructor(message: string, code = "invalid_request") {
    super(400, "invalid_request_error", code, message);
  }
}

export class NotFound extends BridgeError {
  constructor(method: string, path: string) {
    super(
      404,
      "invalid_request_error",
      "not_found",
      `No route for ${method} ${path}: the bridge proxies /v1/* and /api/*, and serves /health, /ready and /metrics.`,
    );
  }
}

export class PayloadTooLarge extends BridgeError {
  constructor(limit: number) {
    super(
      413,
      "invalid_request_error",
      "request_too_large",
      `Request body is larger than the limit of ${limit} bytes: send a smaller body or raise --max-body-size.`,
    );
  }
}

export class UriTooLong extends BridgeError {
  constructor(limit: number) {
    super(414, "invalid_request_error", "uri_too_long", `Request URL is longer than ${limit} characters.`);
  }
}

export class RequestTimeout extends BridgeError {
  constructor(ms: number) {
    // The rest of the body may still be on its way: the connection cannot carry another request. (Deno.serve
    // keeps the socket open anyway; docs/security.md says what a front proxy adds.)
    super(408, "invalid_request_error", "request_timeout", `Request body was not received within ${ms} ms.`, {
      connection: "close",
    });
  }
}

export class RateLimited extends BridgeError {
  constructor(retryAfterMs: number) {
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    super(
      429,
      "rate_limit_error",
      "rate_limit_exceeded",
      `Upstream rate limit of the bridge reached: retry after ${Math.ceil(retryAfterMs)} ms.`,
      { "retry-after": String(seconds) },
    );
  }
}

export class UpstreamUnreachable extends BridgeError {
  /** `notSent`: no byte of the request reached the upstream, so another server may take it (failover). */
  constructor(detail: string, readonly notSent = false) {
    super(502, "upstream_error", "upstream_unreachable", `Upstream is unreachable: ${detail}`);
  }
}

/**
 * The upstream answered with something that is not a well-formed HTTP/1.1 response (bad framing, an oversize
 * head, a protocol switch, an unknown encoding, a body over the bounds). Not retried: it did answer.
 */
export class UpstreamProtocolError extends BridgeError {
  constructor(detail: string) {
    super(
      502,
      "upstream_error",
      "upstream_protocol_error",
      `Upstream sent a response the bridge cannot pass on: ${detail}`,
    );
  }
}

/** A request the bridge refuses to write upstream (a method or header a plugin made invalid). */
export class InvalidUpstreamRequest extends BridgeError {
  constructor(detail: string) {
    super(
      500,
      "server_error",
      "invalid_upstream_request",
      `The bridge refused to send an invalid request upstream: ${detail}`,
    );
  }
}

export class UpstreamTimeout extends BridgeError {
  constructor(ms: number) {
    super(
      504,
      "timeout_error",
      "upstream_timeout",
      `Upstream did not answer within the --timeout of ${ms} ms.`,
    );
  }
}

export class NoUpstreamKey extends BridgeError {
  constructor() {
    super(
      503,
      "server_error",
      "no_upstream_key",
      "No upstream API key is usable right now: all were refused or are cooling down. Retry later.",
      { "retry-after": "10" },
    );
  }
}

export class ShuttingDown extends BridgeError {
  constructor() {
    super(503, "server_error", "shutting_down", "The bridge is shutting down: retry on another instance.", {
      "retry-after": "1",
    });
  }
}

/** Raised when the client went away; nobody is left to answer, so it is only logged. */
export class ClientClosed extends BridgeError {
  constructor() {
    super(499, "client_error", "client_closed_request", "Client closed the request.");
  }
}

/** The error of an unexpected failure inside the bridge. */
export function internalError(message: string): BridgeError {
  return new BridgeError(500, "server_error", "internal_error", `Internal error in the bridge: ${message}`);
}

/**
 * Maps anything thrown to a BridgeError, so unexpected failures still answer in the API's error shape; what is
 * not a BridgeError becomes `fallback(message)` (an internal error unless the caller knows better, such as the
 * upstream client, for which anything else is the upstream's failure).
 */
export function asBridgeError(
  error: unknown,
  fallback: (message: string) => BridgeError = internalError,
): BridgeError {
  if (error instanceof BridgeError) return error;
  return fallback(error instanceof Error ? error.message : String(error));
}
