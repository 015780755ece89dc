/**
 * Every Prometheus metric of the bridge, on a registry of its own (so several bridges in one process, as in
 * the tests, do not share counters). Names follow Prometheus conventions with a `bridge_` prefix; the two
 * `ollama_*` counters keep the original bridge's names so existing dashboards work.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { RequestTally } from "./request_tally.ts";

/** What the metrics read from the cache (kept structural so this module does not depend on the cache's). */
export interface CacheView {
  readonly path: string;
  /** How many requests had each outcome since start. */
  readonly outcomes: ReadonlyMap<string, number>;
  readonly tiers: {
    readonly memory: { readonly size: number; readonly bytes: number; readonly hotThreshold: number };
    readonly disk: { readonly count: number };
  };
}

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

const LATENCY_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
];

/** Known endpoints keep their path as a label; anything else is `other`, so labels stay bounded. */
const KNOWN_ROUTES = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/models",
  "/api/chat",
  "/api/generate",
  "/api/embed",
  "/api/embeddings",
  "/api/tags",
  "/api/show",
  "/api/ps",
  "/api/version",
  "/health",
  "/ready",
  "/metrics",
]);

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);

/** Methods beyond the usual ones are `OTHER`: a client making up methods cannot make up series. */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : "OTHER";
}

export function routeLabel(path: string): string {
  if (KNOWN_ROUTES.has(path)) return path;
  if (path.startsWith("/v1/models/")) return "/v1/models/:model";
  return "other";
}

export class BridgeMetrics {
  readonly registry = new Registry();
  /** The per-request series, counted without prom-client on the request's path. */
  readonly #tally = new RequestTally(LATENCY_BUCKETS);
  readonly requests: Counter<"route" | "method" | "status"> = new Counter({
    name: "bridge_http_requests_total",
    help: "Requests answered by the bridge, by route, method and status.",
    labelNames: ["route", "method", "status"] as const,
    registers: [this.registry],
    collect: () => this.#tally.reportCounts(this.requests),
  });
  readonly requestDuration = this.#registered(
    this.#tally.histogram(
      "bridge_http_request_duration_seconds",
      "Time from request to the end of the response, by route.",
    ),
  );
  readonly listenerRestarts = new Counter({
    name: "bridge_listener_restarts_total",
    help:
      "Times the listener stopped accepting (descriptors ran out under a connection flood) and listened again.",
    registers: [this.registry],
  });
  readonly upstreamInflight = new Gauge({
    name: "bridge_upstream_inflight",
    help: "Requests at the upstream now (holding a --max-inflight slot; streams until they end).",
    registers: [this.registry],
  });
  readonly queueLength = new Gauge({
    name: "bridge_queue_length",
    help: "Requests waiting for an upstream slot (--max-inflight, per-tenant inflight=).",
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: "bridge_queue_wait_seconds",
    help: "Time requests waited for an upstream slot.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly queueRejections = new Counter({
    name: "bridge_queue_rejections_total",
    help:
      "Requests refused by the fair-share limits, by reason (queue_full, queue_timeout, tenant_inflight, " +
      "tenant_rate) and tenant (access-key label; empty without access keys).",
    labelNames: ["reason", "tenant"] as const,
    registers: [this.registry],
  });
  readonly inFlight: Gauge = new Gauge({
    name: "bridge_http_requests_in_flight",
    help: "Requests being answered now.",
    registers: [this.registry],
    collect: () => this.inFlight.set(this.#tally.inFlight),
  });
  readonly upstreamDuration = new Histogram({
    name: "bridge_upstream_duration_seconds",
    help: "Time from sending a request upstream to its response headers, by route and upstream status.",
    labelNames: ["route", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly streamFirstByte = new Histogram({
    name: "bridge_stream_first_byte_seconds",
    help: "Time from request to the first streamed byte sent to the client.",
    labelNames: ["route"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: "ollama_request_errors_total",
    help: "Upstream requests that failed: unreachable, timed out, cut off, or answered with a 5xx.",
    registers: [this.registry],
  });
  readonly memberRequests = new Counter({
    name: "bridge_upstream_member_requests_total",
    help: "Requests sent to each upstream server (failovers and retries count again).",
    labelNames: ["pool", "member"] as const,
    registers: [this.registry],
  });
  readonly memberErrors = new Counter({
    name: "bridge_upstream_member_errors_total",
    help: "Failures of each upstream server's own: no connection, a timeout, a 502/503/504 answer.",
    labelNames: ["pool", "member"] as const,
    registers: [this.registry],
  });
  readonly memberInflight = new Gauge({
    name: "bridge_upstream_member_inflight",
    help: "Requests each upstream server holds now (streams until they end).",
    labelNames: ["pool", "member"] as const,
    registers: [this.registry],
  });
  readonly memberUp = new Gauge({
    name: "bridge_upstream_member_up",
    help: "1 while an upstream server is healthy, 0 after 3 failures in a row or a failed probe.",
    labelNames: ["pool", "member"] as const,
    registers: [this.registry],
  });
  readonly memberAffinityHits = new Counter({
    name: "bridge_upstream_member_affinity_hits_total",
    help: "Conversation turns sent to the upstream server that saw the conversation's previous turn.",
    labelNames: ["pool", "member"] as const,
    registers: [this.registry],
  });
  readonly retryAttempts = new Counter({
    name: "ollama_request_retry_attempts_total",
    help: "Retries of upstream requests (the original bridge's name).",
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: "bridge_upstream_retries_total",
    help: "Retries of upstream requests, by reason.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: "bridge_rate_limited_total",
    help: "Requests refused with 429 because the --rate-limit token bucket was empty.",
    registers: [this.registry],
  });
  readonly keepalives = new Counter({
    name: "bridge_stream_keepalives_total",
    help: "SSE keep-alive comments sent while the upstream was silent.",
    registers: [this.registry],
  });
  readonly thinkBlocks = new Counter({
    name: "bridge_think_blocks_removed_total",
    help: "Think blocks the think filter took out of answers (stripped or moved to a reasoning field).",
    registers: [this.registry],
  });
  readonly upstreamKeyRequests = new Counter({
    name: "bridge_upstream_key_requests_total",
    help: "Upstream requests per pooled API key (by its fingerprint) and status.",
    labelNames: ["key_fp", "status"] as const,
    registers: [this.registry],
  });
  readonly upstreamKeysHealthy = new Gauge({
    name: "bridge_upstream_keys_healthy",
    help: "Pooled upstream API keys neither taken out nor cooling down.",
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: "bridge_auth_failures_total",
    help: "Requests refused with 401 for a missing or unknown access key.",
    registers: [this.registry],
  });
  readonly tenantRequests = new Counter({
    name: "bridge_tenant_requests_total",
    help: "Authenticated requests by tenant (access-key label).",
    labelNames: ["tenant"] as const,
    registers: [this.registry],
  });
  readonly luaCalls = new Counter({
    name: "bridge_lua_calls_total",
    help: "Lua plugin hook calls by hook (request, response) and result (ok, error, timeout).",
    labelNames: ["hook", "result"] as const,
    registers: [this.registry],
  });
  readonly luaDuration = new Histogram({
    name: "bridge_lua_duration_seconds",
    help: "Time a Lua plugin hook call took, including the trip to its worker.",
    labelNames: ["hook"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly asyncJobs = new Counter({
    name: "bridge_async_jobs_total",
    help: "Async (request_fingerprint) jobs by state reached: accepted, completed, failed.",
    labelNames: ["state"] as const,
    registers: [this.registry],
  });
  readonly asyncJobsPending = new Gauge({
    name: "bridge_async_jobs_pending",
    help: "Async jobs accepted and not finished yet.",
    registers: [this.registry],
  });
  readonly cacheRequests = new Counter({
    name: "bridge_cache_requests_total",
    help:
      "Cacheable requests by outcome: HIT-MEMORY, HIT-REDIS, HIT-DISK, MISS, COALESCED; BYPASS for the rest.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly cacheEvictions = new Counter({
    name: "bridge_cache_evictions_total",
    help: "Entries pushed out of a cache tier to make room.",
    labelNames: ["tier"] as const,
    registers: [this.registry],
  });
  readonly cachePromotions = new Counter({
    name: "bridge_cache_promotions_total",
    help: "Disk-tier entries copied into the memory tier for being read often.",
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: "bridge_redis_up",
    help: "1 while the shared Redis (--redis-url) answers within its deadline, 0 while replicas work alone.",
    registers: [this.registry],
  });
  readonly redisFailures = new Counter({
    name: "bridge_redis_failures_total",
    help: "Redis commands that failed or missed their deadline (the bridge went on without Redis), by use.",
    labelNames: ["use"] as const,
    registers: [this.registry],
  });
  readonly coalesced = new Counter({
    name: "bridge_coalesced_requests_total",
    help: "Requests that joined an identical request already on its way upstream.",
    registers: [this.registry],
  });
  readonly closeFramedAnswers = new Counter({
    name: "bridge_close_framed_answers_total",
    help: "Successful answers framed only by the upstream closing the connection, relayed but never cached.",
    registers: [this.registry],
  });
  readonly cacheSavedTokens = new Counter({
    name: "bridge_cache_saved_tokens_total",
    help: "Tokens the upstream did not have to spend because an answer came from the cache (from its usage).",
    registers: [this.registry],
  });
  readonly #cacheEntries = new Gauge({
    name: "bridge_cache_entries",
    help: "Entries in each cache tier.",
    labelNames: ["tier"] as const,
    registers: [this.registry],
  });
  readonly #cacheBytes = new Gauge({
    name: "bridge_cache_bytes",
    help: "Bytes held by each cache tier (disk: the store's files).",
    labelNames: ["tier"] as const,
    registers: [this.registry],
  });
  readonly #hotThreshold = new Gauge({
    name: "bridge_cache_hot_threshold",
    help:
      "Recent reads that admit an answer to the memory tier whatever it would push out (--cache-hot-threshold).",
    registers: [this.registry],
  });

  /** Reads the cache's gauges at every scrape. */
  observeCache(cache: CacheView): void {
    const entries = this.#cacheEntries;
    const bytes = this.#cacheBytes;
    const threshold = this.#hotThreshold;
    const requests = this.cacheRequests;
    const reported = new Map<string, number>();
    this.#collectCache = () => {
      // Counted by the cache in plain numbers on the request's path; the counter is told the difference here.
      for (const [result, count] of cache.outcomes) {
        const delta = count - (reported.get(result) ?? 0);
        if (delta > 0) requests.inc({ result }, delta);
        reported.set(result, count);
      }
      entries.set({ tier: "memory" }, cache.tiers.memory.size);
      entries.set({ tier: "disk" }, cache.tiers.disk.count);
      bytes.set({ tier: "memory" }, cache.tiers.memory.bytes);
      bytes.set({ tier: "disk" }, fileSize(cache.path) + fileSize(`${cache.path}-wal`));
      threshold.set(cache.tiers.memory.hotThreshold);
    };
  }

  #collectCache = () => {};

  readonly memory = new Gauge({
    name: "bridge_memory_bytes",
    help: "Memory of the bridge process from Deno.memoryUsage(), by kind.",
    labelNames: ["kind"] as const,
    registers: [this.registry],
    collect() {
      const usage = Deno.memoryUsage();
      this.set({ kind: "rss" }, usage.rss);
      this.set({ kind: "heap_total" }, usage.heapTotal);
      this.set({ kind: "heap_used" }, usage.heapUsed);
      this.set({ kind: "external" }, usage.external);
    },
  });

  /** A request arrived (in flight until countRequest). */
  requestStarted(): void {
    this.#tally.started();
  }

  /** Counts an answered request. */
  countRequest(route: string, rawMethod: string, status: number, seconds: number): void {
    this.#tally.finished(route, methodLabel(rawMethod), status, seconds);
  }

  /** Registers a metric that is not one of prom-client's own classes. */
  #registered<T extends { name: string }>(metric: T): T {
    this.registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
    return metric;
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    this.#collectCache();
    return this.registry.metrics();
  }
}
