/**
 * The bridge's former memory-tier admission, kept in bench/ as a policy to compare (bench/scenarios/admission.ts):
 * with `adaptive: false` it is a static per-minute threshold (swept for the best one), with `adaptive: true` the
 * original bridge's rule as we had re-created it. The production policy is W-TinyLFU (src/cache/memory.ts).
 *
 * Adaptive hot promotion: which disk-tier entries are worth copying into the memory tier.
 *
 * Each disk hit counts its key's reads over a sliding minute (two one-minute buckets, the older one weighted by
 * how much of it is still inside the window; counters live in a bounded LRU, so memory stays bounded however
 * many keys there are). A key is promoted when its rate reaches the threshold and, when memory is full, when it
 * has been read more often than the entry it would push out (the LRU tail) — an admission check in the spirit of
 * TinyLFU, which keeps a stream of one-off keys from flushing the steadily hot ones. That comparison uses a
 * longer memory than the minute (a count decaying with a 10-minute half-life): near the edge of what fits in
 * memory, keys are read about once a minute, too few reads for one minute to rank them (measured on the bench's
 * Zipf trace: the one-minute rate alone did no better than LRU). The threshold adapts, checked every
 * `adjustEveryMs`:
 * - memory under-used (below 35 % full): halve it (floor 1) — admit more; meanwhile every disk hit is promoted,
 *   since taking an entry into free memory evicts nothing;
 * - memory full (above 95 %) and the entries it pushed out were read more often than the ones it let in:
 *   raise it by a quarter (at least 1, at most `maxThreshold`) — admit only hotter ones;
 * - otherwise keep it.
 * The original bridge moved its threshold by one every 30 s; halving and quarter steps settle in a few checks.
 */
import { LRUCache } from "lru-cache";
import type { Clock } from "../../src/core/time.ts";

const WINDOW_MS = 60_000;
const HALF_LIFE_MS = 600_000;
/** Below this fill the memory tier counts as under-used. */
const UNDER_USED = 0.35;

export interface PromotionOptions {
  /** Starting threshold in reads per minute (`--cache-hot-threshold`). */
  threshold: number;
  /** Whether the threshold adapts; a fixed threshold is kept for comparison (bench). @default true */
  adaptive?: boolean;
  /** Counters kept at most. @default 65536 */
  maxCounters?: number;
  /** @default 30000 */
  adjustEveryMs?: number;
  /** @default 100000 */
  maxThreshold?: number;
  clock: Clock;
}

interface Counter {
  /** Start of the current one-minute bucket. */
  bucket: number;
  current: number;
  previous: number;
  /** Reads, each weighing half as much every HALF_LIFE_MS, as of `scoredAt`. */
  score: number;
  scoredAt: number;
}

export class HotPromotion {
  #threshold: number;
  readonly #adaptive: boolean;
  readonly #counters: LRUCache<string, Counter>;
  readonly #clock: Clock;
  readonly #adjustEveryMs: number;
  readonly #maxThreshold: number;
  #nextAdjust: number;
  /** Rates of entries promoted into, and pushed out of, memory since the last check. */
  #admitted = { count: 0, rate: 0 };
  #evicted = { count: 0, rate: 0 };

  constructor(options: PromotionOptions) {
    this.#threshold = options.threshold;
    this.#adaptive = options.adaptive ?? true;
    this.#counters = new LRUCache({ max: options.maxCounters ?? 65_536 });
    this.#clock = options.clock;
    this.#adjustEveryMs = options.adjustEveryMs ?? 30_000;
    this.#maxThreshold = options.maxThreshold ?? 100_000;
    this.#nextAdjust = this.#clock.now() + this.#adjustEveryMs;
  }

  get threshold(): number {
    return this.#threshold;
  }

  /**
   * Counts a disk-tier read of `key`; returns whether it should now be promoted to memory. `victim` is the key the
   * promotion would push out, when memory is full.
   */
  recordRead(key: string, victim?: string, fill = 1): boolean {
    const rate = this.#count(key);
    // Memory with plenty of room evicts nothing to take an entry in: no reason to refuse one.
    if (rate < this.#threshold && fill >= UNDER_USED) return false;
    if (victim !== undefined && this.#score(key) <= this.#score(victim)) return false;
    this.#admitted.count++;
    this.#admitted.rate += rate;
    return true;
  }

  /** Counts a read served from memory, so a resident entry's rate stays true when it is weighed against others. */
  recordMemoryRead(key: string): void {
    this.#count(key);
  }

  /** The key's reads over the last minute (estimated). */
  rate(key: string): number {
    const counter = this.#counters.peek(key);
    return counter ? this.#estimate(counter, this.#clock.now()) : 0;
  }

  /** Tells the policy that memory pushed `key` out to make room. */
  recordEviction(key: string): void {
    this.#evicted.count++;
    this.#evicted.rate += this.rate(key);
  }

  /** Adapts the threshold to how full memory is; call often, it acts every `adjustEveryMs`. */
  adjust(fill: number): void {
    const now = this.#clock.now();
    if (!this.#adaptive || now < this.#nextAdjust) return;
    this.#nextAdjust = now + this.#adjustEveryMs;
    const admitted = this.#admitted.count ? this.#admitted.rate / this.#admitted.count : 0;
    const evicted = this.#evicted.count ? this.#evicted.rate / this.#evicted.count : 0;
    if (fill < UNDER_USED) this.#threshold = Math.max(1, Math.floor(this.#threshold / 2));
    else if (fill > 0.95 && this.#evicted.count > 0 && evicted > admitted) {
      this.#threshold = Math.min(
        this.#maxThreshold,
        this.#threshold + Math.max(1, Math.round(this.#threshold / 4)),
      );
    }
    this.#admitted = { count: 0, rate: 0 };
    this.#evicted = { count: 0, rate: 0 };
  }

  #count(key: string): number {
    const now = this.#clock.now();
    const bucket = now - (now % WINDOW_MS);
    let counter = this.#counters.get(key);
    if (!counter) {
      this.#counters.set(key, counter = { bucket, current: 0, previous: 0, score: 0, scoredAt: now });
    }
    counter.score = decayed(counter, now) + 1;
    counter.scoredAt = now;
    if (counter.bucket !== bucket) {
      counter.previous = counter.bucket === bucket - WINDOW_MS ? counter.current : 0;
      counter.current = 0;
      counter.bucket = bucket;
    }
    counter.current++;
    return this.#estimate(counter, now);
  }

  #score(key: string): number {
    const counter = this.#counters.peek(key);
    return counter ? decayed(counter, this.#clock.now()) : 0;
  }

  #estimate(counter: Counter, now: number): number {
    const bucket = now - (now % WINDOW_MS);
    if (counter.bucket < bucket - WINDOW_MS) return 0;
    if (counter.bucket < bucket) return counter.current * (1 - (now - bucket) / WINDOW_MS);
    return counter.current + counter.previous * (1 - (now - bucket) / WINDOW_MS);
  }
}

function decayed(counter: Counter, now: number): number {
  return counter.score * Math.pow(2, -(now - counter.scoredAt) / HALF_LIFE_MS);
}
