/**
 * When to retry an upstream request, and how long to wait first. Pure functions: the upstream client
 * decides with them, the tests check them without sleeping.
 */
import type { RetryPolicy } from "../config/index.ts";

/** Why a request was retried; the label of `bridge_upstream_retries_total`. */
export type RetryReason =
  | "network_error"
  | "status_429"
  | "status_500"
  | "status_502"
  | "status_503"
  | "status_504";

const RETRIABLE_STATUSES = new Set([429, 500, 502, 503, 504]);

/** The reason to retry an upstream answer with this status, or undefined when it must be passed on as is. */
export function retryReasonForStatus(status: number): RetryReason | undefined {
  return RETRIABLE_STATUSES.has(status) ? `status_${status}` as RetryReason : undefined;
}

/**
 * Exponential backoff with full jitter: the n-th retry (0-based) waits a uniformly random time between the
 * minimum interval and `min(max, min * 2^n)`, so clients that failed together do not come back together.
 */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxIntervalMs, policy.minIntervalMs * 2 ** Math.min(retry, 30));
  return policy.minIntervalMs + random() * (ceiling - policy.minIntervalMs);
}

/**
 * How long the upstream asked us to wait, in ms, from `retry-after-ms` (OpenAI, Azure) or `Retry-After` in
 * seconds or as an HTTP-date (RFC 9110 §10.2.3). Undefined when absent or unreadable; a date in the past is 0.
 */
export function retryAfterMs(headers: Headers, now: number = Date.now()): number | undefined {
  const precise = headers.get("retry-after-ms");
  if (precise !== null && /^\s*\d+(\.\d+)?\s*$/.test(precise)) return Number(precise);
  const value = headers.get("retry-after")?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
