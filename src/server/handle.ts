/**
 * Every request's way in: its path checked and normalized (core/request_path.ts: a refused path is a 400 whatever
 * it would have reached), then either the bridge's own endpoints or the proxy flow; an error any step throws is
 * answered in the error shape of the API the path belongs to; every request is counted and logged.
 *
 * The proxy flow is plain functions, not a router's middleware chain: a cache hit costs a few tens of µs of CPU,
 * and the same steps behind Hono's context and dispatch cost about 16 µs more (docs/performance.md).
 */
import { asBridgeError, errorShapeOf } from "../core/errors.ts";
import { normalizePath, rawPathOf } from "../core/request_path.ts";
import type { Logger } from "../observe/log.ts";
import type { AccessLog } from "./access_log.ts";
import type { Answered } from "./delivery.ts";

export interface HandlerParts {
  log: Logger;
  accessLog: AccessLog;
  /** Whether a request is for one of the bridge's own endpoints (/health, /ready, /metrics, /admin/* …). */
  isOwn(method: string, path: string): boolean;
  /** The bridge's own endpoints. */
  own(raw: Request): Response | Promise<Response>;
  /** Every other request. */
  proxied(raw: Request, path: string): Promise<Answered>;
}

export function bridgeHandler(parts: HandlerParts): (raw: Request) => Promise<Response> {
  const { log, accessLog, isOwn, own, proxied } = parts;
  return async function handle(raw) {
    const startedAt = accessLog.begin();
    let path = rawPathOf(raw.url);
    let answered: Answered;
    try {
      path = normalizePath(path);
      answered = isOwn(raw.method, path) ? { response: await own(raw) } : await proxied(raw, path);
    } catch (error) {
      answered = { response: errorResponse(error, path, log) };
    }
    accessLog.end(raw, path, startedAt, answered);
    return answered.response;
  };
}

/** The answer to an error a step threw; a server-side failure (5xx) is also logged. */
export function errorResponse(error: unknown, path: string, log: Logger): Response {
  const bridgeError = asBridgeError(error);
  if (bridgeError.status >= 500) {
    log.warn("request failed", { path, status: bridgeError.status, error: bridgeError.message });
  }
  return bridgeError.toResponse(errorShapeOf(path));
}
