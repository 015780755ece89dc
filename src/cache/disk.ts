/**
 * The disk tier: answers in Deno KV under `--cache-dir`.
 *
 * Layout (all keys under "cache"):
 * - ["cache", "i", key]: the index entry, holding the answer itself when it fits in one value (most do), or
 *   the version and part count of a larger one;
 * - ["cache", "p", key, version, n]: the parts of a larger answer, written before the index entry that names
 *   their version, so a crash mid-write leaves no visible partial entry (orphan parts expire on their own);
 * - ["cache", "o", storedAt, key]: the order of storing, so the oldest are found without reading everything;
 * - ["cache", "n"]: the entry count.
 * Every read checks the stored `expiresAt` (KV's `expireIn` is only swept now and then); a corrupt or
 * incomplete entry reads as a miss. Opening a store of a million entries reads one key.
 */
import { type Clock, wallClock } from "../core/time.ts";
import { concatBytes } from "../core/bytes.ts";
import { type CachedAnswer, decodeAnswer, encodeAnswer } from "./entry.ts";

/** Deno KV holds at most 64 KiB in a value; keep room for the index entry's other fields. */
const PART_BYTES = 60 * 1024;
/** At most 800 KiB may go into one atomic operation. */
const PARTS_PER_COMMIT = 12;
/** KV's own expiry runs this long after ours, as a backstop for entries nobody reads or sweeps. */
const EXPIRY_MARGIN_MS = 60_000;

interface IndexEntry {
  storedAt: number;
  expiresAt: number;
  size: number;
  /** The whole encoded answer, when it fits. */
  inline?: Uint8Array<ArrayBuffer>;
  version?: string;
  parts?: number;
}

export interface DiskTierOptions {
  maxEntries: number;
  /** Wall-clock time in epoch ms. */
  /** Epoch ms for expiry. @default wallClock */
  clock?: Clock;
  /** Called with how many entries each eviction or sweep removed. */
  onRemoved?(count: number, why: "evicted" | "expired"): void;
}

const COUNT_KEY = ["cache", "n"];

export class DiskTier {
  #count: number;
  readonly #clock: Clock;
  #trimming: Promise<void> = Promise.resolve();

  private constructor(readonly kv: Deno.Kv, count: number, readonly options: DiskTierOptions) {
    this.#count = count;
    this.#clock = options.clock ?? wallClock;
  }

  /** Opens (or creates) the store; reads only its entry count. */
  static async open(kv: Deno.Kv, options: DiskTierOptions): Promise<DiskTier> {
    const count = await kv.get<number>(COUNT_KEY);
    return new DiskTier(kv, count.value ?? 0, options);
  }

  get count(): number {
    return this.#count;
  }

  async get(key: string): Promise<CachedAnswer | undefined> {
    const index = (await this.kv.get<IndexEntry>(["cache", "i", key])).value;
    if (!index || index.expiresAt <= this.#clock.now()) return undefined;
    let bytes = index.inline;
    if (!bytes) {
      if (!index.version || !index.parts) return undefined;
      const keys = Array.from({ length: index.parts }, (_, n) => ["cache", "p", key, index.version!, n]);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < keys.length; i += 10) {
        for (const entry of await this.kv.getMany<Uint8Array[]>(keys.slice(i, i + 10))) {
          if (!(entry.value instanceof Uint8Array)) return undefined; // a part is missing: a miss
          parts.push(entry.value);
        }
      }
      bytes = concatBytes(parts);
    }
    if (bytes.length !== index.size) return undefined;
    const answer = decodeAnswer(bytes);
    return answer && answer.expiresAt > this.#clock.now() ? answer : undefined;
  }

  async set(key: string, answer: CachedAnswer): Promise<void> {
    const bytes = encodeAnswer(answer);
    const expireIn = Math.max(1000, answer.expiresAt - this.#clock.now() + EXPIRY_MARGIN_MS);
    const index: IndexEntry = { storedAt: answer.storedAt, expiresAt: answer.expiresAt, size: bytes.length };
    if (bytes.length <= PART_BYTES) {
      index.inline = bytes;
    } else {
      index.version = crypto.randomUUID().slice(0, 8);
      index.parts = Math.ceil(bytes.length / PART_BYTES);
      for (let first = 0; first < index.parts; first += PARTS_PER_COMMIT) {
        const op = this.kv.atomic();
        for (let n = first; n < Math.min(index.parts, first + PARTS_PER_COMMIT); n++) {
          op.set(
            ["cache", "p", key, index.version, n],
            bytes.subarray(n * PART_BYTES, (n + 1) * PART_BYTES),
            { expireIn },
          );
        }
        await commit(op);
      }
    }
    const indexKey = ["cache", "i", key];
    const previous = await this.kv.get<IndexEntry>(indexKey);
    const op = this.kv.atomic()
      .check(previous)
      .set(indexKey, index, { expireIn })
      .set(["cache", "o", answer.storedAt, key], true, { expireIn });
    if (previous.value) op.delete(["cache", "o", previous.value.storedAt, key]);
    else op.set(COUNT_KEY, this.#count + 1);
    if (!(await op.commit()).ok) return; // another writer stored the same answer meanwhile: theirs stands
    if (!previous.value) this.#count++;
    if (previous.value?.version) await this.#deleteParts(key, previous.value);
    if (this.#count > this.options.maxEntries) await this.trim();
  }

  /** Removes the oldest entries until at most `--cache-max-entries` remain. */
  trim(): Promise<void> {
    // One trim at a time: concurrent ones would remove the same oldest entries twice over.
    this.#trimming = this.#trimming.then(async () => {
      const excess = this.#count - this.options.maxEntries;
      if (excess <= 0) return;
      const removed = await this.#removeOldest(excess, Infinity);
      this.options.onRemoved?.(removed, "evicted");
    });
    return this.#trimming;
  }

  /** Removes the entries stored before `now - ttlMs`; returns how many. */
  async sweep(ttlMs: number): Promise<number> {
    let removed = 0;
    await (this.#trimming = this.#trimming.then(async () => {
      // An entry is expired once `storedAt + ttl <= now`; the list's end bound is exclusive, hence the + 1.
      removed = await this.#removeOldest(Infinity, this.#clock.now() - ttlMs + 1);
      this.options.onRemoved?.(removed, "expired");
    }));
    return removed;
  }

  async #removeOldest(limit: number, storedBefore: number): Promise<number> {
    let removed = 0;
    const entries = this.kv.list<boolean>(
      { prefix: ["cache", "o"], end: ["cache", "o", Math.min(storedBefore, Number.MAX_VALUE)] },
      { limit: limit === Infinity ? undefined : limit, batchSize: 500 },
    );
    for await (const { key: orderKey } of entries) {
      const [, , storedAt, key] = orderKey as [string, string, number, string];
      const indexKey = ["cache", "i", key];
      const index = await this.kv.get<IndexEntry>(indexKey);
      const op = this.kv.atomic().delete(orderKey);
      // Delete the entry only if this order key is its current one (it may have been stored again since).
      const current = index.value?.storedAt === storedAt;
      if (current) op.check(index).delete(indexKey).set(COUNT_KEY, Math.max(0, this.#count - 1));
      if (!(await op.commit()).ok) continue;
      if (current) {
        this.#count = Math.max(0, this.#count - 1);
        removed++;
        if (index.value!.version) await this.#deleteParts(key, index.value!);
      }
    }
    return removed;
  }

  async #deleteParts(key: string, index: IndexEntry): Promise<void> {
    for (let first = 0; first < (index.parts ?? 0); first += 100) {
      const op = this.kv.atomic();
      for (let n = first; n < Math.min(index.parts!, first + 100); n++) {
        op.delete(["cache", "p", key, index.version!, n]);
      }
      await commit(op);
    }
  }
}

async function commit(op: Deno.AtomicOperation): Promise<void> {
  const result = await op.commit();
  if (!result.ok) throw new Error("Deno KV refused a cache write");
}
