/**
 * The tiers together: a lookup tries memory, then the shared Redis tier if there is one, then disk (an answer
 * found below memory is offered to it: the memory tier's admission policy decides what it keeps); a store goes to
 * Redis and disk, and reaches memory only by being read. A failing tier is skipped (a disk failure is logged; Redis logs its own state changes): the cache
 * never turns a request that could be answered into an error.
 */
import { type Clock, wallClock } from "../core/time.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import type { DiskTier, PurgeFilter } from "./disk.ts";
import type { CachedAnswer } from "./entry.ts";
import type { MemoryTier } from "./memory.ts";
import type { AnswerStore } from "./redis_answers.ts";

export interface CacheHit {
  answer: CachedAnswer;
  outcome: "HIT-MEMORY" | "HIT-REDIS" | "HIT-DISK";
}

export class TieredCache {
  constructor(
    readonly memory: MemoryTier,
    readonly disk: DiskTier,
    readonly ttlMs: number,
    private readonly metrics: BridgeMetrics,
    private readonly log: Logger,
    private readonly clock: Clock = wallClock,
    /** The fleet's tier (`--redis-url`), between memory and disk. */
    readonly shared?: AnswerStore,
  ) {}

  /** The memory tier's answer: the common hit, found without waiting for anything. */
  fromMemory(key: string): CachedAnswer | undefined {
    return this.memory.get(key, this.clock.now());
  }

  /** The tiers below memory (after fromMemory missed); an answer found is offered to memory. */
  async lookupBelow(key: string): Promise<CacheHit | undefined> {
    let answer = await this.shared?.get(key).catch(() => undefined);
    const outcome = answer ? "HIT-REDIS" : "HIT-DISK";
    try {
      answer ??= await this.disk.get(key);
    } catch (error) {
      this.log.warn("cache read failed; answering from upstream", { error: String(error) });
      return undefined;
    }
    if (!answer) return undefined;
    if (this.memory.admit(key, answer)) this.metrics.cachePromotions.inc();
    return { answer, outcome };
  }

  async store(key: string, answer: CachedAnswer): Promise<void> {
    try {
      await Promise.all([this.shared?.set(key, answer).catch(() => {}), this.disk.set(key, answer)]);
      // A stored answer replaces an older one the memory tier may hold.
      this.memory.replace(key, answer);
    } catch (error) {
      this.log.warn("cache write failed; the answer was served but not stored", { error: String(error) });
    }
  }

  /** Purges this replica's own tiers, memory and disk (what a purge here, or another replica's, asks of it). */
  async purgeLocal(filter: PurgeFilter): Promise<{ memory: number; disk: number }> {
    const memory = this.memory.purge((key, answer) =>
      "all" in filter || ("model" in filter ? answer.model === filter.model : key === filter.key)
    );
    return { memory, disk: await this.disk.purge(filter) };
  }

  /** Drops expired disk entries; run periodically. */
  async sweep(): Promise<void> {
    try {
      await this.disk.sweep(this.ttlMs);
    } catch (error) {
      this.log.warn("cache sweep failed", { error: String(error) });
    }
  }
}
