/**
 * One upstream server of a pool: where it is, how many requests it holds, and whether it is trusted with more.
 *
 * Health, from what requests and probes see: 3 consecutive failures of the member's own (no connection, a
 * timeout, a 502/503/504 answer) make it unhealthy, and its pool takes it out for a cooldown that doubles each
 * time (1 s up to 5 min). After the cooldown it is probed, and only a probe that passes puts it back in service.
 */
import type { MemberSettings } from "../config/index.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";

/** Consecutive failures that make a member unhealthy. */
export const FAILURES_TO_TAKE_OUT = 3;
const FIRST_COOLDOWN_MS = 1000;
const LONGEST_COOLDOWN_MS = 5 * 60_000;

/** A member as `GET /upstreams` shows it. */
export interface MemberState {
  /** The base URL without user:password. */
  readonly url: string;
  readonly pool: string;
  readonly healthy: boolean;
  readonly inflight: number;
  /** Epoch ms until which it is out of service (then until a probe passes); null while in service. */
  readonly cooldownUntil: number | null;
}

export class Member {
  readonly base: URL;
  readonly basicAuth?: string;
  readonly weight: number;
  /** The base URL as shown in logs, metrics and /upstreams: no user:password, no trailing slash. */
  readonly label: string;
  inflight = 0;
  healthy = true;
  /** Epoch ms until which the member is out; 0 while in service. */
  cooldownUntil = 0;
  /** The smooth weighted round-robin's running score, which breaks ties between equally loaded members. */
  turn = 0;
  #failures = 0;
  #nextCooldownMs = FIRST_COOLDOWN_MS;
  readonly #counters: ReturnType<typeof memberCounters>;

  constructor(settings: MemberSettings, readonly pool: string, metrics: BridgeMetrics) {
    this.base = settings.url;
    this.basicAuth = settings.basicAuth;
    this.weight = settings.weight;
    this.label = settings.url.href.replace(/\/$/, "");
    this.#counters = memberCounters(metrics, pool, this.label);
    this.#counters.up.set(1);
  }

  get inService(): boolean {
    return this.cooldownUntil === 0;
  }

  /** Counts a request sent to the member; the returned function ends it (once, whatever calls it again). */
  started(): () => void {
    this.inflight++;
    this.#counters.requests.inc();
    this.#counters.inflight.set(this.inflight);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inflight--;
      this.#counters.inflight.set(this.inflight);
    };
  }

  affinityHit(): void {
    this.#counters.affinityHits.inc();
  }

  /** The member answered a request (any status but 502/503/504): its failures are forgotten. */
  succeeded(): void {
    this.#failures = 0;
    if (!this.healthy && this.inService) this.#setHealthy(true);
  }

  /**
   * The member failed a request. Returns true when this takes it out of service, which happens only when
   * `mayLeave` (the pool keeps another member in service).
   */
  failed(mayLeave: boolean, now: number): boolean {
    this.#counters.errors.inc();
    if (++this.#failures < FAILURES_TO_TAKE_OUT) return false;
    this.#setHealthy(false);
    if (!mayLeave || !this.inService) return false;
    this.#coolDown(now);
    return true;
  }

  /** A probe's verdict. A pass puts the member back in service; a failure keeps (or takes) it out for longer. */
  probed(passed: boolean, mayLeave: boolean, now: number): void {
    if (passed) {
      this.#failures = 0;
      this.#nextCooldownMs = FIRST_COOLDOWN_MS;
      this.cooldownUntil = 0;
      this.#setHealthy(true);
      return;
    }
    this.#setHealthy(false);
    if (!this.inService || mayLeave) this.#coolDown(now);
  }

  state(): MemberState {
    return {
      url: this.label,
      pool: this.pool,
      healthy: this.healthy,
      inflight: this.inflight,
      cooldownUntil: this.inService ? null : this.cooldownUntil,
    };
  }

  #coolDown(now: number): void {
    this.cooldownUntil = now + this.#nextCooldownMs;
    this.#nextCooldownMs = Math.min(this.#nextCooldownMs * 2, LONGEST_COOLDOWN_MS);
  }

  #setHealthy(healthy: boolean): void {
    this.healthy = healthy;
    this.#counters.up.set(healthy ? 1 : 0);
  }
}

/** The member's metric series, looked up once (a request increments them by reference), each shown from 0. */
function memberCounters(metrics: BridgeMetrics, pool: string, member: string) {
  const labels = { pool, member };
  const series = {
    requests: metrics.memberRequests.labels(labels),
    errors: metrics.memberErrors.labels(labels),
    inflight: metrics.memberInflight.labels(labels),
    up: metrics.memberUp.labels(labels),
    affinityHits: metrics.memberAffinityHits.labels(labels),
  };
  for (const counter of [series.requests, series.errors, series.affinityHits]) counter.inc(0);
  series.inflight.set(0);
  return series;
}
