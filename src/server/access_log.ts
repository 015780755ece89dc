/**
 * Counts, times and logs every request: one log line when the answer is complete (for a stream, when its
 * last byte went out), with method, path, status, duration, bytes and the upstream status.
 */
import { type Logger, maskedHeaders } from "../observe/log.ts";
import { type BridgeMetrics, routeLabel } from "../observe/metrics.ts";
import type { Answered, Sent } from "./delivery.ts";

export class AccessLog {
  constructor(private readonly log: Logger, private readonly metrics: BridgeMetrics) {}

  /** A request arrived: returns when, for `end`. */
  begin(): number {
    this.metrics.requestStarted();
    return performance.now();
  }

  /** The request that began at `startedAt` was answered: counted and logged once its answer is out. */
  end(raw: Request, path: string, startedAt: number, { response, delivery }: Answered): void {
    const { log, metrics } = this;
    const method = raw.method;
    const status = response.status;
    const finish = (sent?: Sent) => {
      const seconds = (performance.now() - startedAt) / 1000;
      metrics.countRequest(routeLabel(path), method, status, seconds);
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
            request_headers: maskedHeaders(raw.headers),
            response_headers: maskedHeaders(response.headers),
          }
          : undefined),
      });
    };
    if (delivery?.sent instanceof Promise) delivery.sent.then(finish);
    else finish(delivery?.sent);
  }
}
