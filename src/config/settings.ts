/**
 * The settings types: the frozen `Config` that parseConfig (index.ts) builds, and each module's part of it.
 * Modules read their part; nothing here depends on the modules.
 */
import type { ListenAddress } from "./values.ts";

export type LogFormat = "text" | "json";

/** How the bridge calls the upstream: the pooled HTTP/1.1 client or Deno's fetch. */
export type UpstreamClientKind = "pool" | "fetch";

export interface CacheSettings {
  readonly dir: string;
  readonly ttlMs: number;
  readonly maxEntries: number;
  /** `--cache-max-bytes`: the most bytes the disk tier's answers may hold. */
  readonly maxBytes: number;
  readonly hotThreshold: number;
  readonly memoryEntries: number;
  readonly memoryBytes: number;
  /** Tenants share answers (`--cache-shared-across-tenants`). */
  readonly sharedAcrossTenants?: boolean;
}

/** strip: delete reasoning; field: move it to `reasoning_content` (OpenAI) or `thinking` (Ollama). */
export type ThinkMode = "strip" | "field";

export interface ThinkSettings {
  readonly tags: readonly string[];
  readonly mode: ThinkMode;
  /** Models whose prompt template opens the think block for them (R1-distill); undefined: none. */
  readonly implicitModels?: RegExp;
}

export interface RetryPolicy {
  /** Extra attempts after the first one. */
  readonly attempts: number;
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
}

export interface SharedSettings {
  /** `--enable-shared-mode`: the upstream gets the bridge's key, whatever the client sent. */
  readonly enabled: boolean;
  /** Upstream API keys from `--api-key`, `BRIDGE_API_KEY(S)`. */
  readonly apiKeys: readonly string[];
  readonly apiKeysFile?: string;
  /** Client access keys, `label:key` or `key`, from `--access-key`. */
  readonly accessKeys: readonly string[];
  readonly accessKeysFile?: string;
  /** Bearer key of the /admin endpoints (`--admin-key`); they are off without one. */
  readonly adminKey?: string;
  /** Bearer key that `/metrics` requires, if set. */
  readonly metricsKey?: string;
  /** Tenants share cached answers (off: each tenant has its own). */
  readonly sharedAcrossTenants: boolean;
}

export interface RedisSettings {
  /** `redis://` or `rediss://` (TLS), with an optional database number as its path. */
  readonly url: string;
  /** Put before every key and channel the bridge uses (`--redis-prefix`), so fleets can share one Redis. */
  readonly prefix: string;
  /** `--redis-secret`: encrypts what a shared async job must keep of a client's credential. */
  readonly secret?: string;
}

export interface AdmissionSettings {
  /** Requests at the upstream at once; 0 = no cap. */
  readonly maxInflight: number;
  /** Requests that may wait for a slot; past it, 503. */
  readonly queueSize: number;
  /** The longest a request waits for a slot before a 503 (a 429 when it waited on its tenant's own cap). */
  readonly queueTimeoutMs: number;
}

export interface LuaSettings {
  readonly script: string;
  /** 2^N Lua states. */
  readonly instances: number;
  readonly packagePath?: string;
  readonly packageCpath?: string;
  readonly timeoutMs: number;
  /** `--lua-memory-limit`: the most a state's process may grow while it runs a call, in bytes. */
  readonly memoryLimitBytes: number;
}

/** One upstream server of a pool. */
export interface MemberSettings {
  /** Its base URL, without user:password (never logged, never sent in the URL). */
  readonly url: URL;
  /** `Authorization: Basic …` from the URL's user:password, sent when no other credential applies. */
  readonly basicAuth?: string;
  /** Its share of the pool's requests against the other members (`#weight` after the URL), 1 by default. */
  readonly weight: number;
}

/** Equivalent upstreams serving the same models. */
export interface PoolSettings {
  /** `default` for the `--ollama` pool; a route's pool is named by its model glob. */
  readonly name: string;
  readonly members: readonly MemberSettings[];
}

/** `--route <glob>=<url>[,<url>…]`: requests whose model matches the glob go to this pool. */
export interface RouteSettings extends PoolSettings {
  /** The model glob: `*` any run of characters, `?` one; matched against the whole name, ignoring case. */
  readonly models: string;
}

export interface UpstreamSettings {
  /** `--ollama`: where requests go when no route matches their model. */
  readonly defaultPool: PoolSettings;
  /** `--route`, in order: the first whose glob matches the model wins. */
  readonly routes: readonly RouteSettings[];
  /** `--health-interval`: how often members are probed; 0 = only members that failed. */
  readonly healthIntervalMs: number;
}

export interface Config {
  readonly debug: boolean;
  readonly logFormat: LogFormat;
  readonly listen: ListenAddress;
  /** The upstream servers: `--ollama` (the default pool), `--route` pools, `--health-interval`. */
  readonly upstreams: UpstreamSettings;
  readonly timeoutMs: number;
  readonly upstreamClient: UpstreamClientKind;
  /** The most a whole upstream body may decode to (`--max-response-size`). */
  readonly maxResponseBytes: number;
  /** A PEM file of extra CA certificates for https upstreams (`--upstream-ca-file`). */
  readonly upstreamCaFile?: string;
  readonly retry: RetryPolicy;
  /** Upstream requests per second; 0 turns the limiter off. */
  readonly rateLimit: number;
  /** `--replicas-hint`: how many replicas share the limits (already divided into rateLimit and maxInflight). */
  readonly replicas: number;
  /** The fleet's whole `--rate-limit`: what a shared (Redis) limiter allows across every replica. */
  readonly fleetRateLimit: number;
  /** `--redis-url`: replicas share answers, rate limit, flights, async jobs and key cooldowns. */
  readonly redis?: RedisSettings;
  /** Fair share of the upstream: `--max-inflight`, `--queue-size`, `--queue-timeout`. */
  readonly admission: AdmissionSettings;
  readonly maxBodyBytes: number;
  readonly bodyReadTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly shutdownTimeoutMs: number;
  /** The cache's settings, or undefined unless `--enable-cache` is given. */
  readonly cache?: CacheSettings;
  /** Shared (enterprise) mode and access control. */
  readonly shared: SharedSettings;
  /** Async (request_fingerprint) jobs, when `--enable-async-request` is given. */
  readonly async?: { readonly resultTtlMs: number; readonly concurrency: number; readonly dir: string };
  /** The Lua plugin, when `--enable-luajit` is given. */
  readonly lua?: LuaSettings;
  /** The think filter's settings, or undefined when `--disable-think-filter` is given. */
  readonly think?: ThinkSettings;
}
