/**
 * The guard in front of every proxied request: reads the body within `--max-body-size` and
 * `--body-read-timeout` (a 413 is sent before the rest of a large body is read), and parses the JSON body of
 * the endpoints the bridge understands, so a malformed request is answered 400 without touching the upstream.
 */
import { InvalidRequest, PayloadTooLarge, RequestTimeout, UriTooLong } from "../core/errors.ts";
import { concatBytes } from "../core/bytes.ts";
import { endpointKind } from "../core/endpoints.ts";
import { parseJsonBody } from "../core/json_body.ts";
import { credentialTenant } from "../core/request.ts";
import type { ProxyRequest } from "../core/request.ts";
import { type Cancellation, schedule } from "../core/time.ts";

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

/**
 * The request as the proxy steps see it, from the client's request, its normalized `path`, its access-key tenant
 * (if access keys are on) and the cancellation the caller ties to the client.
 */
export async function readRequest(
  raw: Request,
  path: string,
  accessTenant: string | undefined,
  cancellation: Cancellation,
  options: ReadRequestOptions,
): Promise<ProxyRequest> {
  const url = raw.url;
  if (url.length > MAX_URL_LENGTH) throw new UriTooLong(MAX_URL_LENGTH);
  const queryStart = url.indexOf("?");
  const method = raw.method;
  const body = method === "GET" || method === "HEAD" ? null : await readBody(raw, options);
  const kind = endpointKind(method, path);
  const parsed = kind ? parseJsonBody(body) : undefined;
  // Every field always present, in one order: the later steps read requests of one shape.
  return {
    method,
    path,
    search: queryStart < 0 ? "" : url.slice(queryStart),
    headers: raw.headers,
    body,
    kind,
    json: parsed?.json,
    inexactNumbers: parsed?.inexactNumbers,
    cancellation,
    tenant: accessTenant ?? (options.tenantByCredential ? credentialTenant(raw.headers) : undefined),
    startedAt: performance.now(),
  };
}

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
  return new Promise((resolve, reject) => {
    const timer = schedule(ms, () => reject(new RequestTimeout(ms)));
    reading.then(
      (bytes) => (timer.cancel(), resolve(bytes)),
      (error) => {
        timer.cancel();
        reject(new InvalidRequest(`Request body could not be read: ${error.message}`, "body_unreadable"));
      },
    );
  });
}
