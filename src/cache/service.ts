/**
 * The cache as the proxy uses it: decides whether a request may be answered from the cache, answers hits,
 * coalesces identical misses into one flight, and stores the flight's answer when it is complete.
 */
import { join } from "node:path";
import type { CacheSettings } from "../config/index.ts";
import { asBridgeError } from "../core/errors.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import type { ProxyRequest } from "../core/request.ts";
import { type Answer, type CacheOutcome, type HeaderPairs, headerPairs, setHeader } from "../core/answer.ts";
import type { UpstreamExchange } from "../upstream/client.ts";
import { settledWithin, wallClock } from "../core/time.ts";
import { DiskTier, type PurgeFilter } from "./disk.ts";
import { openPrivateKv } from "./private_kv.ts";
import { type CachedAnswer, isCompleteAnswer, storedAnswer } from "./entry.ts";
import { type Flight, type FlightHead, Flights } from "./flight.ts";
import { cacheKey, isCacheable } from "./key.ts";
import { MemoryTier } from "./memory.ts";
import { type CacheHit, TieredCache } from "./tiered.ts";
import { RedisAnswers } from "./redis_answers.ts";
import { FleetFlights, type FlightLeases, type Lease, localLeases } from "./fleet_flight.ts";
import { localPurgeNotice, PurgeNotice, type PurgeNotices } from "./purge_notice.ts";
import { type RedisLink, RedisUnavailable } from "../redis/link.ts";

export interface CacheControl {
  /** `Cache-Control: no-cache`: do not answer from the cache; the fresh answer replaces the entry. */
  noCache: boolean;
  /** `Cache-Control: no-store`: do not store this answer. */
  noStore: boolean;
  /** The request's model, kept with the answer (for a purge by model). */
  model?: string;
}

/** An answer larger than this is served but not stored. */
const MAX_STORED_BYTES = 32 * 1024 * 1024;
const SWEEP_EVERY_MS = 60_000;

export function cacheControl(headers: Headers): CacheControl {
  const value = headers.get("cache-control")?.toLowerCase() ?? "";
  return { noCache: /\bno-cache\b/.test(value), noStore: /\bno-store\b/.test(value) };
}

export class CacheService {
  readonly flights = new Flights({ maxRecordBytes: MAX_STORED_BYTES });
  /** Flights whose leader asked `no-store`: their answer is not served to anyone else once complete. */
  readonly #unstored = new WeakSet<Flight>();
  readonly #sweeper: ReturnType<typeof setInterval>;

  private constructor(
    readonly tiers: TieredCache,
    private readonly kv: Deno.Kv,
    readonly path: string,
    private readonly settings: CacheSettings,
    private readonly metrics: BridgeMetrics,
    /** Who calls the upstream for a flight: this replica alone, or one of the fleet (`--redis-url`). */
    private readonly leases: FlightLeases,
    /** Tells the other replicas of a purge, and hears theirs. */
    private readonly purgeNotice: PurgeNotices,
  ) {
    this.#sweeper = setInterval(() => this.tiers.sweep(), SWEEP_EVERY_MS);
    Deno.unrefTimer(this.#sweeper);
    metrics.observeCache(this);
  }

  static async open(
    settings: CacheSettings,
    metrics: BridgeMetrics,
    log: Logger,
    redis?: RedisLink,
  ): Promise<CacheService> {
    const path = join(settings.dir, "cache.kv");
    const kv = await openPrivateKv(settings.dir, "cache.kv", log);
    // While this file names a live process, `deno task cache:purge` and `cache:compact` keep their hands off.
    await Deno.writeTextFile(join(settings.dir, "bridge.pid"), String(Deno.pid), { mode: 0o600 });
    const memory = new MemoryTier({
      maxEntries: settings.memoryEntries,
      maxBytes: settings.memoryBytes,
      hotThreshold: settings.hotThreshold,
      onEvict: () => metrics.cacheEvictions.inc({ tier: "memory" }),
    });
    const disk = await DiskTier.open(kv, {
      maxEntries: settings.maxEntries,
      maxBytes: settings.maxBytes,
      onRemoved: (count, why) =>
        why === "evicted" && count && metrics.cacheEvictions.inc({ tier: "disk" }, count),
    });
    if (disk.droppedAtOpen) {
      log.warn("the cache store was written by another version: started empty", {
        dropped_entries: disk.droppedAtOpen,
      });
    }
    const shared = redis ? new RedisAnswers(redis) : undefined;
    const tiers = new TieredCache(memory, disk, settings.ttlMs, metrics, log, wallClock, shared);
    // Entries that expired while the bridge was down leave the count now, not at the first sweep.
    tiers.sweep();
    const leases = redis ? new FleetFlights(redis, MAX_STORED_BYTES) : localLeases;
    // A purge another replica asks for reaches this one's own tiers.
    const notice = redis
      ? PurgeNotice.listen(redis, (filter) => tiers.purgeLocal(filter), log)
      : localPurgeNotice;
    return new CacheService(tiers, kv, path, settings, metrics, leases, notice);
  }

  /** The key and cache control of a cacheable request, or undefined for one the cache stays out of. */
  prepare(request: ProxyRequest): ({ key: string } & CacheControl) | undefined {
    if (!isCacheable(request)) return undefined;
    const tenant = this.settings.sharedAcrossTenants ? "" : request.tenant;
    const model = typeof request.json?.model === "string" ? request.json.model : undefined;
    return { key: cacheKey(request, tenant), ...cacheControl(request.headers), model };
  }

  /**
   * Answers a cacheable request: from the cache, from an identical request's flight, or from a new flight. A
   * memory hit is answered at once, without a promise (the common case, made cheap).
   */
  answer(
    key: string,
    control: CacheControl,
    send: () => Promise<UpstreamExchange>,
  ): Answer | Promise<Answer> {
    // An answer already on its way is the freshest there is (it may be a refresh that will replace the stored
    // one), so join it before looking in the tiers. A refresh (no-cache) makes its own call.
    const flight = control.noCache ? undefined : this.flights.get(key);
    // A flight whose whole answer arrived is over: a request now is a hit on that answer (it is in memory, on
    // its way to the store), not one that joined a flight in progress.
    const answered = flight && !this.#unstored.has(flight) ? flight.answered : undefined;
    if (answered && this.#storable(answered.head, answered.body)) {
      this.#count("HIT-MEMORY");
      return replay(this.#toStore(answered.head, answered.body, control.model), "HIT-MEMORY");
    }
    const cached = !flight && !control.noCache ? this.tiers.fromMemory(key) : undefined;
    if (cached) return this.#hit({ answer: cached, outcome: "HIT-MEMORY" });
    return this.#answerBelowMemory(key, control, send, flight);
  }

  /** A stored answer found in a tier, counted and replayed. */
  #hit(hit: CacheHit): Answer {
    this.#count(hit.outcome);
    if (hit.answer.tokens) this.metrics.cacheSavedTokens.inc(hit.answer.tokens);
    return replay(hit.answer, hit.outcome);
  }

  /** The rest of answer(): the tiers below memory, the fleet, or a flight (joined or new). */
  async #answerBelowMemory(
    key: string,
    control: CacheControl,
    send: () => Promise<UpstreamExchange>,
    flight: Flight | undefined,
  ): Promise<Answer> {
    if (!flight && !control.noCache) {
      const hit = await this.tiers.lookupBelow(key);
      if (hit) return this.#hit(hit);
      flight = this.flights.get(key); // one may have started while we looked
    }
    // Another replica may have this answer on its way: one call for the fleet (a refresh or an unstored answer
    // flies alone, as it would on one replica).
    let lease: Lease | undefined;
    if (!flight && !control.noCache && !control.noStore) {
      const fleetAnswer = await this.#fromFleet(key);
      if (fleetAnswer && "status" in fleetAnswer) return fleetAnswer;
      lease = fleetAnswer?.lease;
      flight = this.flights.get(key);
    }
    const outcome: CacheOutcome = flight ? "COALESCED" : "MISS";
    if (flight) {
      this.metrics.coalesced.inc();
      lease?.release();
    } else {
      flight = this.flights.start(key, send, async (done, complete) => {
        await this.#store(key, done, complete, control);
        await lease?.finish(complete);
      });
      lease?.publish(flight);
      if (control.noStore) this.#unstored.add(flight);
    }
    this.#count(outcome);
    const view = flight.subscribe();
    return flightAnswer(await view.head, view.body(), outcome);
  }

  /**
   * The fleet's part of a miss: an answer another replica stored or is making (followed live), or this
   * replica's lease to make it; undefined when Redis cannot tell (this replica then flies alone).
   */
  async #fromFleet(key: string): Promise<Answer | { lease: Lease } | undefined> {
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const claim = await this.leases.claim(key);
        if (claim.role === "leader") {
          // The last leader may have stored the answer and let its lease go since this request looked.
          const stored = await this.tiers.shared?.get(key).catch(() => undefined);
          if (!stored) return { lease: claim.lease };
          await claim.lease.release();
          this.#count("HIT-REDIS");
          return replay(stored, "HIT-REDIS");
        }
        const followed = await this.leases.follow(key, claim.token);
        if (followed === "takeover") continue; // its leader is gone before answering: lead it anew
        this.metrics.coalesced.inc();
        this.#count("COALESCED");
        return flightAnswer(followed.head, followed.body, "COALESCED");
      }
    } catch (error) {
      if (!(error instanceof RedisUnavailable)) throw error;
    }
    return undefined;
  }

  /**
   * Closes the store once the answers on their way into it are written (a graceful stop must not lose the
   * answers it just served), waiting at most `withinMs`.
   */
  async close(withinMs = 5000): Promise<void> {
    clearInterval(this.#sweeper);
    await settledWithin([this.flights.settled(), this.tiers.disk.idle()], withinMs);
    this.kv.close();
    await Deno.remove(join(this.settings.dir, "bridge.pid")).catch(() => {});
  }

  #count(outcome: CacheOutcome): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  /**
   * Removes the answers `filter` names (all, a model's, one key) from every tier; returns how many this replica
   * removed. With Redis, the other replicas are told to purge their own memory and disk tiers too.
   */
  async purge(filter: PurgeFilter): Promise<{ memory: number; disk: number; redis?: number }> {
    const local = await this.tiers.purgeLocal(filter);
    if (!this.tiers.shared) return local;
    const redis = await this.tiers.shared.purge(filter).catch(() => 0);
    await this.purgeNotice.send(filter).catch(() => {});
    return { ...local, redis };
  }

  /** What /admin/cache/stats shows: entries, bytes, hit ratios per tier, the memory tier's admission. */
  stats(): Record<string, unknown> {
    const count = (outcome: CacheOutcome) => this.outcomes.get(outcome) ?? 0;
    const hits = count("HIT-MEMORY") + count("HIT-REDIS") + count("HIT-DISK");
    const lookups = hits + count("MISS") + count("COALESCED");
    const ratio = (hits: number) => lookups ? hits / lookups : 0;
    return {
      entries: { memory: this.tiers.memory.size, disk: this.tiers.disk.count },
      bytes: {
        memory: this.tiers.memory.bytes,
        disk: this.tiers.disk.bytes,
        maxDisk: this.settings.maxBytes,
      },
      hitRatio: {
        memory: ratio(count("HIT-MEMORY")),
        redis: ratio(count("HIT-REDIS")),
        disk: ratio(count("HIT-DISK")),
        total: ratio(hits),
      },
      requests: Object.fromEntries(this.outcomes),
      promotionThreshold: this.tiers.memory.hotThreshold,
      admission: { ...this.tiers.memory.segments, sketchBytes: this.tiers.memory.sketch.bytes },
    };
  }

  /** How many requests had each outcome since start (for /admin/cache/stats). */
  readonly outcomes = new Map<CacheOutcome, number>();

  async #store(key: string, flight: Flight, complete: boolean, control: CacheControl): Promise<void> {
    if (!complete || control.noStore || !flight.storable) return;
    const head = await flight.head;
    const body = flight.recorded;
    if (head.closeFramed && head.status < 300) this.metrics.closeFramedAnswers.inc();
    if (!this.#storable(head, body)) return;
    await this.tiers.store(key, this.#toStore(head, body, control.model));
  }

  /** Whether a whole answer may be stored (and served again): 2xx, within bounds, framed, complete. */
  #storable(head: FlightHead, body: Uint8Array): boolean {
    if (head.status < 200 || head.status >= 300 || body.length > MAX_STORED_BYTES) return false;
    // A body that ended with the connection may be cut short even if what arrived parses: never stored.
    return !head.closeFramed && isCompleteAnswer(head.format, body);
  }

  #toStore(head: FlightHead, body: Uint8Array<ArrayBuffer>, model: string | undefined): CachedAnswer {
    return storedAnswer(head.status, head.headers, head.format, body, this.settings.ttlMs, model);
  }
}

/** A flight's answer (this replica's or another's) as the client gets it, `X-Cache` saying how it came. */
function flightAnswer(head: FlightHead, body: ReadableStream<Uint8Array>, outcome: CacheOutcome): Answer {
  const headers = headerPairs(head.headers);
  setHeader(headers, "x-cache", outcome);
  return {
    status: head.status,
    headers,
    format: head.format,
    body,
    closeFramed: head.closeFramed,
    queuedMs: outcome === "MISS" ? head.queuedMs : undefined,
    cache: outcome,
    upstreamStatus: head.status,
    failure: asBridgeError,
    release: () => {},
  };
}

/**
 * A stored answer as the client gets it, in the shape it was recorded (JSON, SSE or NDJSON); with an outcome
 * (a cache hit), `X-Cache` and `Age` say where it came from.
 */
export function replay(answer: CachedAnswer, outcome?: CacheOutcome): Answer {
  // Stored headers never hold x-cache or age (entry.ts keeps only those describing the answer).
  const headers: HeaderPairs = outcome
    ? [
      ...answer.headers,
      ["x-cache", outcome],
      ["age", String(Math.max(0, Math.floor((Date.now() - answer.storedAt) / 1000)))],
    ]
    : [...answer.headers];
  return {
    status: answer.status,
    headers,
    format: answer.format,
    body: answer.format ? ReadableStream.from([answer.body]) : answer.body,
    cache: outcome,
    failure: asBridgeError,
    release: () => {},
  };
}
