/**
 * The upstream client: sends a proxied request to the upstream under one deadline (`--timeout`), waits for a
 * rate-limit token, and retries what is safe to retry. Nothing has reached the client while it retries: it
 * returns the first response it will not retry, and the caller streams it.
 */
import type { RetryPolicy } from "../config/index.ts";
import {
  asBridgeError,
  BridgeError,
  ClientClosed,
  NoUpstreamKey,
  RateLimited,
  UpstreamTimeout,
  UpstreamUnreachable,
} from "../core/errors.ts";
import type { KeyPool } from "./keys.ts";
import type { Logger } from "../observe/log.ts";
import { type BridgeMetrics, routeLabel } from "../observe/metrics.ts";
import { Cancellation, schedule, sleep } from "../core/time.ts";
import type { UpstreamFetch } from "./transport/index.ts";
import { type Admission, TenantOverLimit } from "./admission.ts";
import type { TenantLimits } from "./keys.ts";
import { type RateLimiter, tokenBucket } from "./rate_limit.ts";
import type { ProxyRequest } from "../core/request.ts";
import { CREDENTIAL_HEADERS } from "../core/request.ts";
import type { SecretMask } from "./secret_mask.ts";
import { backoffDelay, retryAfterMs, type RetryReason, retryReasonForStatus } from "./retry.ts";
import { upstreamTarget } from "./target.ts";
import { conversationKey } from "./affinity.ts";
import type { Member } from "./member.ts";
import type { UpstreamPool } from "./pool.ts";
import type { Upstreams } from "./upstreams.ts";

const unreachable = (message: string) => new UpstreamUnreachable(message);

/** An upstream response whose body is still arriving under the request's deadline. */
export interface UpstreamExchange {
  readonly response: Response;
  /** The whole body, when it arrived with the head (see UpstreamReply). */
  readonly complete?: Uint8Array<ArrayBuffer>;
  /** The body ends when the upstream closes the connection: complete or cut, nobody can tell (never stored). */
  readonly closeFramed?: boolean;
  /** How long the request waited for a slot at the upstream (`--max-inflight`), in ms. */
  readonly queuedMs?: number;
  /** The error to show the client for a failure while reading the body. */
  failure(error: unknown): BridgeError;
  /** Ends the deadline; call once the body is read, has failed, or was cancelled. */
  release(): void;
}

export interface SendOptions {
  /** Wait for a rate-limit token (and a slot, however long) instead of refusing (background jobs). */
  waitForToken?: boolean;
  /** Send to this pool instead of the one the request's model routes to (the merged model lists). */
  pool?: UpstreamPool;
}

export interface UpstreamClient {
  send(request: ProxyRequest, options?: SendOptions): Promise<UpstreamExchange>;
}

export interface UpstreamOptions {
  /** The upstream servers, their pools and routes. */
  upstreams: Upstreams;
  timeoutMs: number;
  retry: RetryPolicy;
  limiter: RateLimiter;
  metrics: BridgeMetrics;
  log: Logger;
  /** How requests are sent: the pooled HTTP/1.1 client or Deno's fetch. */
  fetch: UpstreamFetch;
  /** Shared mode: the upstream keys; each call carries one of them instead of the client's credentials. */
  keys?: KeyPool;
  /** Remove the client's credentials (they are access keys for the bridge, not for the upstream). */
  stripCredentials?: boolean;
  /** The concurrency cap and its queue (`--max-inflight`, per-tenant `inflight=`), when there is one. */
  admission?: Admission;
  /** A tenant's own limits (its access key's `rps=`, `inflight=`). */
  tenantLimits?: (tenant: string) => TenantLimits | undefined;
  random?: () => number;
}

export function createUpstreamClient(options: UpstreamOptions): UpstreamClient {
  const { upstreams, timeoutMs, retry, limiter, metrics, log } = options;
  const fetchUpstream = options.fetch;

  const tenantBuckets = new Map<string, RateLimiter>();
  /** The tenant's own token bucket (`rps=`), made on first use; a reload with a new rate makes a new one. */
  const tenantBucket = (tenant: string, rps: number) => {
    const name = `${tenant}\u0000${rps}`;
    let bucket = tenantBuckets.get(name);
    if (!bucket) tenantBuckets.set(name, bucket = tokenBucket(rps));
    return bucket;
  };

  async function send(request: ProxyRequest, sendOptions: SendOptions = {}): Promise<UpstreamExchange> {
    const background = sendOptions.waitForToken === true;
    const tenant = request.tenant ?? "";
    const limits = request.tenant ? options.tenantLimits?.(request.tenant) : undefined;
    if (limits?.rps) {
      const bucket = tenantBucket(tenant, limits.rps);
      if (background) await bucket.take(request.cancellation);
      const wait = background ? 0 : await bucket.tryTake();
      if (wait > 0) {
        metrics.queueRejections.inc({ reason: "tenant_rate", tenant });
        throw new TenantOverLimit(tenant, `rate of ${limits.rps} requests a second`, Math.ceil(wait / 1000));
      }
    }
    if (background) await limiter.take(request.cancellation);
    const refusal = background ? 0 : await limiter.tryTake();
    if (refusal > 0) {
      metrics.rateLimited.inc();
      throw new RateLimited(refusal);
    }
    const permit = options.admission && (options.admission.settings.maxInflight > 0 || limits?.inflight)
      ? await options.admission.acquire(tenant, limits?.inflight, request.cancellation, background)
      : undefined;
    // One cancellation for the whole exchange: the client leaving or the deadline passing ends it.
    const cancellation = new Cancellation();
    const deadline = schedule(timeoutMs, () => cancellation.abort(new UpstreamTimeout(timeoutMs)));
    const unlink = request.cancellation.onAbort(() => cancellation.abort(new ClientClosed()));
    const expiresAt = performance.now() + timeoutMs;
    const pool = sendOptions.pool ?? upstreams.poolFor(modelOf(request));
    const conversation = pool.members.length > 1 ? conversationKey(request) : undefined;
    /** The members that failed this request before it was written or that answered 502/503: not chosen again. */
    const tried = new Set<Member>();
    let member: Member | undefined;
    let ended = () => {};
    const release = () => {
      deadline.cancel();
      unlink();
      permit?.release();
      ended();
    };
    const failure = (error: unknown): BridgeError => {
      return asBridgeError(
        error instanceof BridgeError || !cancellation.aborted ? error : cancellation.reason,
        unreachable,
      );
    };
    /** The exchange to hand on; in shared mode with the pool's keys masked (an upstream may echo its key). */
    const finished = (
      response: Response,
      complete: Uint8Array<ArrayBuffer> | undefined,
      closeFramed: boolean | undefined,
      key: unknown,
    ): UpstreamExchange => {
      const shown = key ? masked(options.keys!.mask, response, complete) : { response, complete };
      return { ...shown, closeFramed, queuedMs: permit?.waitedMs, failure, release };
    };
    /** Whether another member of the pool may take a request the last one did not process. */
    const failover = () => {
      tried.add(member!);
      ended();
      return pool.hasUntried(tried);
    };
    const route = routeLabel(request.path);

    try {
      let calls = 0;
      let keySwitches = 0;
      for (let attempt = 0;; attempt++) {
        if (calls++ > 0) await limiter.take(cancellation);
        const key = options.keys?.pick();
        if (options.keys && !key) throw new NoUpstreamKey();
        const pick = pool.pick(conversation, tried);
        member = pick.member;
        if (pick.affinityHit) member.affinityHit();
        ended = member.started();
        const url = upstreamTarget(member.base, request.path, request.search);
        const sentAt = performance.now();
        let reason: RetryReason | undefined;
        let waitMs: number | undefined;
        let response: Response | undefined;
        let complete: Uint8Array<ArrayBuffer> | undefined;
        let closeFramed: boolean | undefined;
        try {
          ({ response, complete, closeFramed } = await fetchUpstream(url, {
            method: request.method,
            headers: request.headers,
            body: request.body,
            cancellation,
            credentials: key
              ? `Bearer ${key.value}`
              : options.stripCredentials
              ? member.basicAuth ?? null
              : member.basicAuth && !hasCredential(request.headers)
              ? member.basicAuth
              : undefined,
          }));
        } catch (error) {
          const cause = failure(error);
          if (!(cause instanceof UpstreamUnreachable)) throw cause;
          metrics.upstreamErrors.inc();
          upstreams.failed(pool, member);
          // Nothing of the request reached that member: another one takes it, without spending a retry.
          if (cause.notSent && failover()) {
            log.warn("upstream unreachable; sending the request to another member of its pool", {
              url,
              pool: pool.name,
              error: cause.message,
            });
            attempt--;
            continue;
          }
          log.warn("upstream unreachable: is it running, and is --ollama right?", {
            url,
            attempt: attempt + 1,
            error: cause.message,
          });
          if (attempt >= retry.attempts) throw cause;
          reason = "network_error";
        }
        if (response && key) {
          // A refused or exhausted key is the key's fault, not the request's: move to the next key at once,
          // without spending a retry.
          const { status, statusText, headers } = response;
          const text = status === 402 || status === 429 ? await response.text() : undefined;
          if (text !== undefined) {
            response = new Response(text, { status, statusText, headers });
            complete = undefined;
          }
          const verdict = options.keys!.judge(key, status, headers, text);
          if (verdict !== "ok" && options.keys!.healthy > 0 && keySwitches++ < options.keys!.size) {
            await response.body?.cancel();
            ended();
            attempt--;
            continue;
          }
        }
        if (response) {
          const { status } = response;
          metrics.upstreamDuration.observe({ route, status }, (performance.now() - sentAt) / 1000);
          if (status >= 500) metrics.upstreamErrors.inc();
          if (status >= 502 && status <= 504) {
            upstreams.failed(pool, member);
          } else {
            member.succeeded();
            if (status < 300) pool.remember(conversation, member);
          }
          // A 502 or 503 says the member did not process the request: another one takes it, without a retry.
          if ((status === 502 || status === 503) && failover()) {
            await response.body?.cancel();
            attempt--;
            continue;
          }
          reason = retryReasonForStatus(status);
          if (!reason || attempt >= retry.attempts) return finished(response, complete, closeFramed, key);
          waitMs = retryAfterMs(response.headers);
          // A Retry-After is honoured even above --retry-max-interval, but never past the deadline: if the
          // upstream asks for more time than is left, its answer goes to the client as it is.
          if (waitMs !== undefined && performance.now() + waitMs >= expiresAt) {
            return finished(response, complete, closeFramed, key);
          }
          await response.body?.cancel();
        }
        ended();
        const delay = waitMs ?? backoffDelay(attempt, retry, options.random);
        metrics.retryAttempts.inc();
        metrics.retries.inc({ reason });
        log.debug("retrying upstream request", {
          url,
          attempt: attempt + 1,
          reason,
          delay_ms: Math.round(delay),
        });
        await sleep(delay, cancellation);
      }
    } catch (error) {
      const cause = failure(error);
      if (member && cause instanceof UpstreamTimeout) upstreams.failed(pool, member);
      release();
      throw cause;
    }
  }

  return { send };
}

/** The model a request names (Ollama's older endpoints call it `name`): what `--route` globs match. */
function modelOf(request: ProxyRequest): string | undefined {
  const model = request.json?.model ?? request.json?.name;
  return typeof model === "string" ? model : undefined;
}

function hasCredential(headers: Headers): boolean {
  for (const name of CREDENTIAL_HEADERS) if (headers.has(name)) return true;
  return false;
}

/** The answer with the bridge's keys masked (shared mode): an upstream may echo the key it was sent. */
function masked(
  mask: SecretMask,
  response: Response,
  complete: Uint8Array<ArrayBuffer> | undefined,
): { response: Response; complete?: Uint8Array<ArrayBuffer> } {
  if (!complete) return { response: mask.response(response) };
  const body = mask.bytes(complete);
  const headers = new Headers();
  response.headers.forEach((value, name) => headers.append(name, mask.text(value)));
  return {
    response: new Response(body, { status: response.status, statusText: response.statusText, headers }),
    complete: body,
  };
}
