/**
 * The bridge's HTTP application: its own endpoints, and the proxy steps in the order of DESIGN §3.
 * Every error thrown by a step reaches `onError`, which answers in OpenAI's error shape.
 */
import { Hono } from "hono";
import { CacheService } from "./cache/service.ts";
import type { Config } from "./config/index.ts";
import { asBridgeError, NotFound } from "./errors.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { BridgeMetrics } from "./metrics.ts";
import { accessLog } from "./middleware/access_log.ts";
import { readRequest } from "./middleware/read_request.ts";
import { proxyHandler } from "./proxy/handler.ts";
import { type RateLimiter, tokenBucket, unlimited } from "./proxy/ratelimit.ts";
import { createUpstreamClient } from "./proxy/upstream.ts";
import { createTransport, type UpstreamFetch } from "./transport/index.ts";

export interface Bridge {
  readonly app: Hono;
  readonly lifecycle: Lifecycle;
  readonly metrics: BridgeMetrics;
  /** The cache, when `--enable-cache` is on. */
  readonly cache?: CacheService;
  /** Releases what the bridge holds open (stores, workers); the server must be stopped first. */
  close(): Promise<void>;
}

export interface BridgeDependencies {
  log: Logger;
  /** Replaces the transport for upstream calls (tests). */
  fetch?: UpstreamFetch;
}

export async function createBridge(config: Config, deps: BridgeDependencies): Promise<Bridge> {
  const { log } = deps;
  const metrics = new BridgeMetrics();
  const lifecycle = new Lifecycle();
  const transport = createTransport(config.upstreamClient);
  const limiter: RateLimiter = config.rateLimit > 0 ? tokenBucket(config.rateLimit) : unlimited;
  const upstream = createUpstreamClient({
    base: config.upstream,
    timeoutMs: config.timeoutMs,
    retry: config.retry,
    limiter,
    metrics,
    log,
    fetch: deps.fetch ?? transport.fetch,
  });
  const cache = config.cache ? await CacheService.open(config.cache, metrics, log) : undefined;

  const app = new Hono();
  app.use(accessLog(log, metrics));
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get(
    "/ready",
    (c) => lifecycle.draining ? c.json({ status: "draining" }, 503) : c.json({ status: "ready" }),
  );
  app.get(
    "/metrics",
    async (c) => c.text(await metrics.render(), 200, { "content-type": metrics.registry.contentType }),
  );
  const proxy = [
    readRequest({ maxBodyBytes: config.maxBodyBytes, bodyReadTimeoutMs: config.bodyReadTimeoutMs }),
    proxyHandler({
      upstream,
      lifecycle,
      metrics,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      think: config.think,
      cache,
    }),
  ] as const;
  app.all("/v1/*", ...proxy);
  app.all("/api/*", ...proxy);
  app.notFound((c) => new NotFound(c.req.method, c.req.path).toResponse());
  app.onError((error, c) => {
    const bridgeError = asBridgeError(error);
    if (bridgeError.status >= 500) {
      log.warn("request failed", {
        path: c.req.path,
        status: bridgeError.status,
        error: bridgeError.message,
      });
    }
    return bridgeError.toResponse();
  });

  return {
    app,
    lifecycle,
    metrics,
    cache,
    async close() {
      transport.close();
      await cache?.close();
    },
  };
}
