/**
 * The guard in front of every proxied request: reads the body within `--max-body-size` and
 * `--body-read-timeout` (a 413 is sent before the rest of a large body is read), and parses the JSON body of
 * the endpoints the bridge understands, so a malformed request is answered 400 without touching the upstream.
 */
import type { MiddlewareHandler } from "hono";
import { InvalidRequest, PayloadTooLarge, RequestTimeout, UriTooLong } from "../core/errors.ts";
import { concatBytes } from "../core/bytes.ts";
import { endpointKind } from "../core/endpoints.ts";
import { parseJsonBody } from "../core/json_body.ts";
import { credentialTenant } from "../core/request.ts";
import "./path_guard.ts";
import type { ProxyRequest } from "../core/request.ts";
import { Cancellation, schedule, type Timer } from "../core/time.ts";

declare module "hono" {
  interface ContextVariableMap {
    proxyRequest: ProxyRequest;
  }
}

export interface ReadRequestOptions {
  maxBodyBytes: number;
  bodyReadTimeoutMs: number;
  /**
   * Clients are told apart by their own credential (a hash of it): true when it is what goes upstream (not in
   * shared mode, no access keys), unless `--cache-shared-across-tenants`.
   */
  tenantByCredential: boolean;
}

const MAX_URL_LENGTH = 16 * 1024;
/** How long a request waits before the bridge starts watching for its client to leave. */
export const CLIENT_WATCH_DELAY_MS = 200;

export const readRequest = (options: ReadRequestOptions): MiddlewareHandler =>
  async function readRequest(c, next) {
    const raw = c.req.raw;
    const url = c.req.url;
    if (url.length > MAX_URL_LENGTH) {
      throw new UriTooLong(MAX_URL_LENGTH);
    }
    const queryStart = url.indexOf("?");
    const method = raw.method;
    const path = c.get("path");
    const body = method === "GET" || method === "HEAD" ? null : await readBody(raw, options);
    const kind = endpointKind(method, path);
    // Watching request.signal costs ~10 µs a request in Deno.serve, so it starts only for requests still
    // waiting after CLIENT_WATCH_DELAY_MS: a client that left earlier is noticed then, at the latest.
    // (Streams notice a departed client at once, through the cancelled body.)
    const cancellation = new Cancellation();
    const watch = schedule(CLIENT_WATCH_DELAY_MS, () => cancellation.follow(raw.signal));
    const request: ProxyRequest = {
      method,
      path,
      search: queryStart < 0 ? "" : url.slice(queryStart),
      headers: raw.headers,
      body,
      kind,
      ...(kind ? parseJsonBody(body) : undefined),
      cancellation,
      tenant: c.get("tenant") ?? (options.tenantByCredential ? credentialTenant(raw.headers) : undefined),
      startedAt: performance.now(),
    };
    c.set("proxyRequest", request);
    try {
      await next();
    } finally {
      watch.cancel();
    }
  };

async function readBody(
  request: Request,
  options: ReadRequestOptions,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const length = request.headers.get("content-length");
  const declared = length === null ? NaN : Number(length);
  if (declared > options.maxBodyBytes) throw new PayloadTooLarge(options.maxBodyBytes);
  if (declared === 0) return null;
  // With a declared length within the limit, one read in Deno's own code is the cheapest way in. (Touching
  // `request.body` first would build a stream and take bytes() off that fast path.)
  if (declared > 0) return withTimeout(request.bytes(), options.bodyReadTimeoutMs);
  if (!request.body) return null;
  const reader = request.body.getReader();
  let timedOut = false;
  // Cancelling the reader ends a pending read as if the body were complete: the flag tells the two apart.
  const timer = schedule(options.bodyReadTimeoutMs, () => {
    timedOut = true;
    reader.cancel().catch(() => {});
  });
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > options.maxBodyBytes) {
        reader.cancel().catch(() => {});
        throw new PayloadTooLarge(options.maxBodyBytes);
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof PayloadTooLarge) throw error;
    throw new InvalidRequest(
      `Request body could not be read: ${(error as Error).message}`,
      "body_unreadable",
    );
  } finally {
    timer.cancel();
  }
  if (timedOut) throw new RequestTimeout(options.bodyReadTimeoutMs);
  return size === 0 ? null : concatBytes(chunks);
}

/** The body, or a 408 if it takes longer than `ms` to arrive. */
function withTimeout(
  reading: Promise<Uint8Array<ArrayBuffer>>,
  ms: number,
): Promise<Uint8Array<ArrayBuffer>> {
  let timer!: Timer;
  const timedOut = new Promise<never>((_, reject) =>
    timer = schedule(ms, () => reject(new RequestTimeout(ms)))
  );
  return Promise.race([reading, timedOut]).then(
    (bytes) => (timer.cancel(), bytes),
    (error) => {
      timer.cancel();
      throw error instanceof RequestTimeout
        ? error
        : new InvalidRequest(`Request body could not be read: ${error.message}`, "body_unreadable");
    },
  );
}
