/**
 * Every upstream server the bridge knows: the default pool (`--ollama`), the route pools (`--route`), and their
 * health checks. Requests are routed by model (first matching glob, else the default pool); members that fail are
 * taken out by their pool and probed (`GET /api/tags`, or `/v1/models` for a base with a path) before they are
 * used again; with more than one member in all, every member is probed each `--health-interval`.
 */
import { globMatcher } from "../config/upstreams.ts";
import type { UpstreamSettings } from "../config/index.ts";
import { UpstreamTimeout } from "../core/errors.ts";
import { Cancellation, schedule } from "../core/time.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import type { Member, MemberState } from "./member.ts";
import { UpstreamPool } from "./pool.ts";
import { upstreamTarget } from "./target.ts";
import type { UpstreamFetch } from "./transport/index.ts";

/** The longest a probe may take before it counts as failed. */
const PROBE_TIMEOUT_MS = 5000;

export interface UpstreamsOptions {
  metrics: BridgeMetrics;
  log: Logger;
  /** How probes are sent: the same transport as requests. */
  fetch: UpstreamFetch;
  /** Epoch milliseconds (tests pass their own). */
  now?: () => number;
}

export class Upstreams {
  readonly defaultPool: UpstreamPool;
  /** Every pool: the route pools in order, then the default pool. */
  readonly pools: readonly UpstreamPool[];
  readonly #routes: readonly { readonly matches: (model: string) => boolean; readonly pool: UpstreamPool }[];
  readonly #healthIntervalMs: number;
  readonly #options: UpstreamsOptions;
  readonly #now: () => number;
  readonly #probing = new Set<Member>();
  /** Each member out of service has one probe waiting for the end of its cooldown. */
  readonly #timers = new Map<Member, ReturnType<typeof setTimeout>>();
  #interval: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(settings: UpstreamSettings, options: UpstreamsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#healthIntervalMs = settings.healthIntervalMs;
    this.defaultPool = new UpstreamPool(settings.defaultPool, options.metrics);
    this.#routes = settings.routes.map((route) => ({
      matches: globMatcher(route.models),
      pool: new UpstreamPool(route, options.metrics),
    }));
    this.pools = [...this.#routes.map((route) => route.pool), this.defaultPool];
  }

  /** The pool for a request's model: the first route whose glob matches it, else the default pool. */
  poolFor(model: string | undefined): UpstreamPool {
    if (model === undefined) return this.defaultPool;
    return this.#routes.find((route) => route.matches(model))?.pool ?? this.defaultPool;
  }

  /** Ready while the default pool has a healthy member (a dead route must not take the replica out). */
  get ready(): boolean {
    return this.defaultPool.healthy;
  }

  states(): MemberState[] {
    return this.pools.flatMap((pool) => pool.members.map((member) => member.state()));
  }

  /** A failure of the member's own (no connection, a timeout, 502/503/504): three in a row take it out. */
  failed(pool: UpstreamPool, member: Member): void {
    if (!member.failed(pool.mayTakeOut(member), this.#now())) return;
    this.#options.log.warn("upstream taken out of its pool after failing 3 times in a row; probing it", {
      url: member.label,
      pool: pool.name,
      cooldown_ms: member.cooldownUntil - this.#now(),
    });
    this.#probeAfterCooldown(pool, member);
  }

  /** Starts the periodic probes (`--health-interval`). */
  start(): void {
    if (this.#healthIntervalMs <= 0) return;
    const several = this.pools.reduce((sum, pool) => sum + pool.members.length, 0) > 1;
    const interval = setInterval(() => {
      for (const pool of this.pools) {
        for (const member of pool.members) {
          if (several || !member.healthy || !member.inService) void this.#probe(pool, member);
        }
      }
    }, this.#healthIntervalMs);
    Deno.unrefTimer(interval);
    this.#interval = interval;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#interval);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }

  #probeAfterCooldown(pool: UpstreamPool, member: Member): void {
    clearTimeout(this.#timers.get(member));
    const timer = setTimeout(() => {
      this.#timers.delete(member);
      void this.#probe(pool, member);
    }, Math.max(0, member.cooldownUntil - this.#now()));
    Deno.unrefTimer(timer);
    this.#timers.set(member, timer);
  }

  async #probe(pool: UpstreamPool, member: Member): Promise<void> {
    if (this.#closed || this.#probing.has(member)) return;
    this.#probing.add(member);
    const wasOut = !member.inService;
    try {
      const passed = await this.#passesProbe(member);
      if (this.#closed) return;
      member.probed(passed, pool.mayTakeOut(member), this.#now());
      const fields = { url: member.label, pool: pool.name };
      if (wasOut && member.inService) {
        this.#options.log.info("upstream back in service: its probe passed", fields);
      }
      if (!wasOut && !member.inService) {
        this.#options.log.warn("upstream taken out: its probe failed", fields);
      }
      if (!member.inService) this.#probeAfterCooldown(pool, member);
      else {
        clearTimeout(this.#timers.get(member));
        this.#timers.delete(member);
      }
    } finally {
      this.#probing.delete(member);
    }
  }

  /** `GET /api/tags` (or `/v1/models` for an OpenAI-style base): any answer but 502/503/504 passes. */
  async #passesProbe(member: Member): Promise<boolean> {
    const path = member.base.pathname.length > 1 ? "/v1/models" : "/api/tags";
    const cancellation = new Cancellation();
    const timeoutMs = Math.min(PROBE_TIMEOUT_MS, Math.max(1000, this.#healthIntervalMs));
    const deadline = schedule(timeoutMs, () => cancellation.abort(new UpstreamTimeout(timeoutMs)));
    try {
      const { response } = await this.#options.fetch(upstreamTarget(member.base, path, ""), {
        method: "GET",
        headers: new Headers(),
        body: null,
        cancellation,
        credentials: member.basicAuth ?? null,
      });
      await response.body?.cancel();
      return response.status < 502 || response.status > 504;
    } catch {
      return false;
    } finally {
      deadline.cancel();
    }
  }
}
