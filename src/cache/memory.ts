/**
 * The memory tier: an LRU of decoded answers bounded by entry count and by bytes (lru-cache refuses an
 * unbounded configuration, and silently skips an entry larger than its byte bound).
 */
import { LRUCache } from "lru-cache";
import type { CachedAnswer } from "./entry.ts";

export interface MemoryTierOptions {
  maxEntries: number;
  maxBytes: number;
  /** Called for every entry pushed out to make room (not for expiry or replacement). */
  onEvict?(key: string, answer: CachedAnswer): void;
}

/** Approximate memory an answer takes: its body, its headers, and the bookkeeping around it. */
export function answerSize(answer: CachedAnswer): number {
  let size = answer.body.byteLength + 256;
  for (const [name, value] of answer.headers) size += name.length + value.length;
  return size;
}

export class MemoryTier {
  readonly #lru: LRUCache<string, CachedAnswer>;
  readonly maxEntries: number;

  constructor(options: MemoryTierOptions) {
    this.maxEntries = options.maxEntries;
    this.#lru = new LRUCache<string, CachedAnswer>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: answerSize,
      dispose: (answer, key, reason) => {
        if (reason === "evict") options.onEvict?.(key, answer);
      },
    });
  }

  /** The answer if present and not expired at `now` (epoch ms). */
  get(key: string, now: number): CachedAnswer | undefined {
    const answer = this.#lru.get(key);
    if (answer && answer.expiresAt <= now) {
      this.#lru.delete(key);
      return undefined;
    }
    return answer;
  }

  has(key: string): boolean {
    return this.#lru.has(key);
  }

  set(key: string, answer: CachedAnswer): void {
    this.#lru.set(key, answer);
  }

  delete(key: string): void {
    this.#lru.delete(key);
  }

  /** Removes the entries `matches` picks; returns how many. */
  purge(matches: (key: string, answer: CachedAnswer) => boolean): number {
    let purged = 0;
    for (const [key, answer] of [...this.#lru.entries()]) {
      if (matches(key, answer)) {
        this.#lru.delete(key);
        purged++;
      }
    }
    return purged;
  }

  /** The least recently used key: the one the next insertion would push out when memory is full. */
  coldest(): string | undefined {
    for (const key of this.#lru.rkeys()) return key;
    return undefined;
  }

  get full(): boolean {
    return this.#lru.size >= this.maxEntries;
  }

  get size(): number {
    return this.#lru.size;
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }
}
