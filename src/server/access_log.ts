/**
 * Counts, times and logs every request: one log line when the answer is complete (for a stream, when its
 * last byte went out), with method, path, status, duration, bytes and the upstream status.
 */
import type { MiddlewareHandler } from "hono";
import { type Logger, maskedHeaders } from "../observe/log.ts";
import { type BridgeMetrics, routeLabel } from "../observe/metrics.ts";
import type { Sent } from "./delivery.ts";

export const accessLog = (log: Logger, metrics: BridgeMetrics): MiddlewareHandler =>
  async function accessLog(c, next) {
    const startedAt = performance.now();
    metrics.inFlight.inc();
    try {
      await next();
    } finally {
      const { method, path } = c.req;
      const status = c.res.status;
      const route = routeLabel(path);
      const delivery = c.get("delivery");
      const finish = (sent?: Sent) => {
        const seconds = (performance.now() - startedAt) / 1000;
        metrics.inFlight.dec();
        metrics.countRequest(route, method, status, seconds);
        log.info(`${method} ${path}`, {
          status,
          ms: Math.round(seconds * 10000) / 10,
          bytes: sent?.bytes,
          upstream: delivery?.upstreamStatus,
          queued_ms: delivery?.queuedMs === undefined ? undefined : Math.round(delivery.queuedMs * 10) / 10,
          stream: sent?.stream,
          cache: delivery?.cache,
          error: sent?.error,
          ...(log.debugEnabled
            ? {
              request_headers: maskedHeaders(c.req.raw.headers),
              response_headers: maskedHeaders(c.res.headers),
            }
            : undefined),
        });
      };
      if (delivery) delivery.sent.then(finish);
      else finish();
    }
  };
