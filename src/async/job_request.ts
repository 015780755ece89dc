/**
 * What a job keeps of its request, and how it is run: both job stores (local Deno KV, shared Redis) use these.
 */
import { type CachedAnswer, storedAnswer } from "../cache/entry.ts";
import { asBridgeError, errorShapeOf } from "../core/errors.ts";
import type { ProxyRequest } from "../core/request.ts";
import { Cancellation } from "../core/time.ts";
import type { Logger } from "../observe/log.ts";
import { streamFormat } from "../stream/format.ts";
import type { UpstreamClient } from "../upstream/client.ts";
import { CREDENTIAL_HEADERS } from "../upstream/headers.ts";

export interface StoredRequest {
  method: string;
  path: string;
  search: string;
  headers: [string, string][];
  body: Uint8Array | null;
  tenant?: string;
}

/** What a submission finds. */
export type Submission =
  | { kind: "accepted" }
  | { kind: "waiting" }
  | { kind: "conflict" }
  | { kind: "done"; answer: CachedAnswer };

/** Where async jobs are kept and run: this replica's Deno KV, or the fleet's Redis. */
export interface JobStore {
  /** Submits (or polls) a job: the answer when done, else whether it was accepted or is still on its way. */
  submit(fingerprint: string, digest: string, request: ProxyRequest): Promise<Submission>;
  close(withinMs?: number): Promise<void>;
}

/** A failed job's answer waits this long (at most) for the poll that takes it. */
export const FAILURE_KEPT_MS = 10 * 60_000;

/** The request as it goes upstream: its fingerprint field is the bridge's, so it is left out of the body. */
export function storedRequest(request: ProxyRequest, keepCredentials: boolean): StoredRequest {
  const { request_fingerprint: _, ...json } = request.json ?? {};
  const headers: [string, string][] = [];
  request.headers.forEach((value, name) => {
    if (keepCredentials || !CREDENTIAL_HEADERS.has(name)) headers.push([name, value]);
  });
  return {
    method: request.method,
    path: request.path,
    search: request.search,
    headers,
    body: new TextEncoder().encode(JSON.stringify(json)),
    tenant: request.tenant,
  };
}

/** Whether a stored request carries a client credential. */
export function carriesCredential(stored: StoredRequest): boolean {
  return stored.headers.some(([name]) => CREDENTIAL_HEADERS.has(name));
}

/** Sends the job's request upstream and records the whole answer, whatever its status. */
export async function executeJob(
  stored: StoredRequest,
  upstream: UpstreamClient,
  resultTtlMs: number,
  log: Logger,
): Promise<CachedAnswer> {
  const request: ProxyRequest = {
    method: stored.method,
    path: stored.path,
    search: stored.search,
    headers: new Headers(stored.headers),
    body: stored.body ? new Uint8Array(stored.body) : null,
    tenant: stored.tenant,
    cancellation: new Cancellation(),
    startedAt: performance.now(),
  };
  try {
    const exchange = await upstream.send(request, { waitForToken: true });
    const { response } = exchange;
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = await response.bytes();
    } catch (error) {
      throw exchange.failure(error);
    } finally {
      exchange.release();
    }
    const format = streamFormat(response.headers.get("content-type"));
    return storedAnswer(response.status, response.headers, format, body, resultTtlMs);
  } catch (error) {
    const failure = asBridgeError(error);
    log.warn("async job failed upstream", { error: failure.message });
    const body = new TextEncoder().encode(failure.body(errorShapeOf(stored.path)));
    const headers = new Headers({ "content-type": "application/json" });
    return storedAnswer(failure.status, headers, undefined, body, resultTtlMs);
  }
}
