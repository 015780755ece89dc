/**
 * The bridge's HTTP application: its own endpoints, and the proxy steps in the order of DESIGN §3.
 * Every error thrown by a step reaches `onError`, which answers in OpenAI's error shape.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { AsyncJobs } from "../async/jobs.ts";
import type { JobStore } from "../async/job_request.ts";
import { RedisJobs } from "../async/redis_jobs.ts";
import { RedisLink } from "../redis/link.ts";
import { fleetRateLimiter } from "../upstream/fleet_rate_limit.ts";
import { shareKeyCooldowns } from "../upstream/fleet_key_cooldowns.ts";
import { CacheService } from "../cache/service.ts";
import { PluginHooks } from "../plugin/hooks.ts";
import { startLua } from "../plugin/runner.ts";
import { InvalidApiKey } from "./authenticate.ts";
import { loadKeys } from "../upstream/key_loading.ts";
import { AccessKeys, KeyPool, presentedKey } from "../upstream/keys.ts";
import { monotonicClock } from "../core/time.ts";
import type { Config } from "../config/index.ts";
import { errorShapeOf, NotFound } from "../core/errors.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "../observe/log.ts";
import { BridgeMetrics } from "../observe/metrics.ts";
import { AccessLog } from "./access_log.ts";
import { adminRoutes } from "./admin.ts";
import { bridgeHandler, errorResponse } from "./handle.ts";
import { proxyFlow } from "./proxy_flow.ts";
import { proxyHandler } from "./proxy_handler.ts";
import { type RateLimiter, tokenBucket, unlimited } from "../upstream/rate_limit.ts";
import { Admission } from "../upstream/admission.ts";
import { createUpstreamClient } from "../upstream/client.ts";
import { Upstreams } from "../upstream/upstreams.ts";
import { createTransport, type UpstreamFetch } from "../upstream/transport/index.ts";

export interface Bridge {
  /** Answers every request (what Deno.serve calls). */
  readonly handle: (request: Request) => Promise<Response>;
  /** The bridge's own endpoints: /health, /ready, /metrics, /upstreams, /admin/*. */
  readonly app: Hono;
  readonly lifecycle: Lifecycle;
  readonly metrics: BridgeMetrics;
  /** The cache, when `--enable-cache` is on. */
  readonly cache?: CacheService;
  /** Re-reads the key files (SIGHUP); requests in flight are not affected. */
  reloadKeys(): Promise<void>;
  /** Releases what the bridge holds open (stores, workers); the server must be stopped first. */
  close(withinMs?: number): Promise<void>;
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
  const transport = createTransport(config.upstreamClient, {
    maxResponseBytes: config.maxResponseBytes,
    caCerts: config.upstreamCaFile ? [await readCaFile(config.upstreamCaFile)] : undefined,
  });
  const keys = await loadKeys(config.shared);
  const { defaultPool, routes } = config.upstreams;
  const members = [defaultPool, ...routes].flatMap((pool) => pool.members);
  log.addSecrets([
    ...keys.apiKeys,
    ...keys.accessKeys.map((entry) => entry.key),
    config.shared.metricsKey,
    config.shared.adminKey,
    config.redis?.secret,
    ...members.flatMap((member) => [member.basicAuth, ...basicAuthParts(member.basicAuth)]),
  ]);
  const keyPool = config.shared.enabled ? new KeyPool(keys.apiKeys, monotonicClock, log, metrics) : undefined;
  const access = keys.accessKeys.length || config.shared.accessKeysFile
    ? new AccessKeys(keys.accessKeys)
    : undefined;
  const luaPool = config.lua ? await startLua({ ...config.lua, log, metrics }) : undefined;
  const plugin = luaPool ? new PluginHooks(luaPool, log, metrics) : undefined;
  const redis = config.redis ? await RedisLink.open(config.redis, metrics, log) : undefined;
  // This replica's own bucket is its share of the fleet's rate; with Redis it is only the outage fallback.
  const alone: RateLimiter = config.rateLimit > 0 ? tokenBucket(config.rateLimit) : unlimited;
  const limiter = redis && config.fleetRateLimit > 0
    ? fleetRateLimiter(redis, config.fleetRateLimit, alone)
    : alone;
  if (redis && keyPool) shareKeyCooldowns(redis, keyPool);
  // Metric labels name access-key tenants only (a tenant known by its credential's hash is "").
  const tenantLabel = (tenant: string) => tenant.startsWith("credential:") ? "" : tenant;
  const admission = config.admission.maxInflight > 0 || access
    ? new Admission(config.admission, {
      changed: (inflight, queued) => {
        metrics.upstreamInflight.set(inflight);
        metrics.queueLength.set(queued);
      },
      waited: (seconds) => metrics.queueWait.observe(seconds),
      rejected: (reason, tenant) => metrics.queueRejections.inc({ reason, tenant: tenantLabel(tenant) }),
    })
    : undefined;
  const upstreamFetch = deps.fetch ?? transport.fetch;
  const upstreams = new Upstreams(config.upstreams, { metrics, log, fetch: upstreamFetch });
  upstreams.start();
  const upstream = createUpstreamClient({
    upstreams,
    timeoutMs: config.timeoutMs,
    retry: config.retry,
    limiter,
    metrics,
    log,
    fetch: upstreamFetch,
    keys: keyPool,
    stripCredentials: access !== undefined,
    admission,
    tenantLimits: access ? (tenant) => access.limitsOf(tenant) : undefined,
  });
  const cache = config.cache ? await CacheService.open(config.cache, metrics, log, redis) : undefined;
  const keepCredentials = !keyPool && !access;
  const jobs: JobStore | undefined = !config.async ? undefined : redis
    ? await RedisJobs.open(
      redis,
      { ...config.async, keepCredentials, secret: config.redis?.secret },
      upstream,
      metrics,
      log,
    )
    : await AsyncJobs.open({ ...config.async, keepCredentials }, upstream, metrics, log);

  // The bridge's own endpoints; every other request takes the proxy flow (handle.ts).
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    if (lifecycle.draining) return c.json({ status: "draining" }, 503);
    if (!upstreams.ready) return c.json({ status: "no healthy upstream in the default pool" }, 503);
    return c.json({ status: "ready" });
  });
  // The operator's views, behind --metrics-key when it is set.
  const metricsAccess = config.shared.metricsKey
    ? new AccessKeys([{ label: "metrics", key: config.shared.metricsKey }])
    : undefined;
  const operatorOnly: MiddlewareHandler = async (c, next) => {
    if (metricsAccess && !metricsAccess.identify(presentedKey(c.req.raw.headers))) throw new InvalidApiKey();
    await next();
  };
  app.get("/metrics", operatorOnly, async (c) => {
    return c.text(await metrics.render(), 200, { "content-type": metrics.registry.contentType });
  });
  app.get("/upstreams", operatorOnly, (c) => c.json(upstreams.states()));
  adminRoutes(app, config.shared.adminKey, cache);
  app.notFound((c) => new NotFound(c.req.method, c.req.path).toResponse(errorShapeOf(c.req.path)));
  app.onError((error, c) => errorResponse(error, c.req.path, log));
  const adminOpen = config.shared.adminKey !== undefined;
  const isOwn = (method: string, path: string) =>
    ((method === "GET" || method === "HEAD") && OWN_PATHS.has(path)) ||
    (adminOpen && path.startsWith("/admin/"));

  const proxied = proxyFlow({
    metrics,
    access,
    read: {
      maxBodyBytes: config.maxBodyBytes,
      bodyReadTimeoutMs: config.bodyReadTimeoutMs,
      tenantByCredential: !config.shared.enabled && !access && !config.shared.sharedAcrossTenants,
    },
    plugin,
    proxy: proxyHandler({
      upstream,
      upstreams,
      log,
      lifecycle,
      metrics,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      maxResponseBytes: config.maxResponseBytes,
      think: config.think,
      cache,
      plugin,
      jobs,
    }),
  });
  const handle = bridgeHandler({
    log,
    accessLog: new AccessLog(log, metrics),
    isOwn,
    own: app.fetch,
    proxied,
  });

  return {
    handle,
    app,
    lifecycle,
    metrics,
    cache,
    async reloadKeys() {
      const fresh = await loadKeys(config.shared);
      log.addSecrets([...fresh.apiKeys, ...fresh.accessKeys.map((entry) => entry.key)]);
      keyPool?.replace(fresh.apiKeys);
      access?.replace(fresh.accessKeys);
      log.info("keys reloaded", { upstream_keys: keyPool?.size ?? 0, access_keys: fresh.accessKeys.length });
    },
    async close(withinMs = 5000) {
      luaPool?.close();
      upstreams.close();
      const started = performance.now();
      await jobs?.close(withinMs);
      transport.close();
      await cache?.close(Math.max(0, withinMs - (performance.now() - started)));
      await redis?.close();
    },
  };
}

/** The password inside a Basic credential, and the credential's base64 form: masked in logs wherever they appear. */
function basicAuthParts(basic: string | undefined): string[] {
  if (!basic) return [];
  const userinfo = atob(basic.slice("Basic ".length));
  const colon = userinfo.indexOf(":");
  return [userinfo.slice(colon + 1), basic.slice("Basic ".length)];
}

async function readCaFile(path: string): Promise<string> {
  let pem: string;
  try {
    pem = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`cannot read --upstream-ca-file ${path}: ${(error as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new Error(`--upstream-ca-file ${path} holds no PEM certificate`);
  }
  return pem;
}

/** The paths of the bridge's own GET endpoints. */
const OWN_PATHS = new Set(["/health", "/ready", "/metrics", "/upstreams"]);
