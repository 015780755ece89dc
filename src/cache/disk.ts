/**
 * The disk tier: answers in Deno KV under `--cache-dir`.
 *
 * Layout (all keys under "cache"):
 * - ["cache", "i", key]: the index entry, holding the answer itself when it fits in one value (most do), or
 *   the version and part count of a larger one;
 * - ["cache", "p", key, version, n]: the parts of a larger answer, written before the index entry that names
 *   their version, so a crash mid-write leaves no visible partial entry (orphan parts expire on their own);
 * - ["cache", "o", storedAt, key]: the order of storing, so the oldest are found without reading everything;
 *   its value is the entry's size. Exactly one per entry, and never expired by KV itself: only this tier removes
 *   one, in the same atomic commit that changes the count and the bytes;
 * - ["cache", "n"], ["cache", "b"]: the entry count and their bytes (KV sums, exact with several writers);
 * - ["cache", "format"]: the layout's version; a store of another version is emptied at open.
 * Every read checks the stored `expiresAt` (KV's `expireIn` is only swept now and then); a corrupt or
 * incomplete entry reads as a miss. KV may drop an expired index entry on its own (it sweeps them at open): its
 * order key then still counts, until the next sweep or trim finds it and takes it out of the count. So the count
 * never drifts, however long the bridge was down. Opening a store of a million entries reads two keys.
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
  /** The request's model, for a purge by model. */
  model?: string;
  /** The whole encoded answer, when it fits. */
  inline?: Uint8Array<ArrayBuffer>;
  version?: string;
  parts?: number;
}

export interface DiskTierOptions {
  maxEntries: number;
  /** The most bytes the stored answers may hold (`--cache-max-bytes`). @default Infinity */
  maxBytes?: number;
  /** Epoch ms for expiry. @default wallClock */
  clock?: Clock;
  /** How long after an entry's own expiry KV may drop it by itself. @default 60000 */
  kvExpiryMarginMs?: number;
  /** Called with how many entries each eviction or sweep removed. */
  onRemoved?(count: number, why: "evicted" | "expired"): void;
}

const COUNT_KEY = ["cache", "n"];
const BYTES_KEY = ["cache", "b"];
const FORMAT_KEY = ["cache", "format"];
/**
 * The layout's version: 2 since order keys stopped expiring and the count became a KV sum; 3 since order keys
 * hold the size, the bytes are summed and entries name their model.
 */
export const DISK_FORMAT = 3;
const ONE = 1n;
const MINUS_ONE = 0xffff_ffff_ffff_ffffn; // KV sums of 64-bit counters wrap around 2^64
/** A signed change as a KV sum operand (mod 2^64). */
const delta = (n: number) => BigInt.asUintN(64, BigInt(n));

/** Which entries a purge removes: all, those of a model, or one key. */
export type PurgeFilter = { all: true } | { model: string } | { key: string };

/** How a removal pass went: entries removed, and order keys whose entry KV had already expired. */
interface Removed {
  removed: number;
  gone: number;
}

export class DiskTier {
  #count: number;
  #bytes: number;
  readonly #clock: Clock;
  #trimming: Promise<void> = Promise.resolve();

  private constructor(
    readonly kv: Deno.Kv,
    [count, bytes]: [number, number],
    readonly options: DiskTierOptions,
    /** Entries of another layout version dropped at open. */
    readonly droppedAtOpen: number,
  ) {
    this.#count = count;
    this.#bytes = bytes;
    this.#clock = options.clock ?? wallClock;
  }

  /** Opens (or creates) the store: reads its format and entry count; a store of another format is emptied. */
  static async open(kv: Deno.Kv, options: DiskTierOptions): Promise<DiskTier> {
    const format = await kv.get<number>(FORMAT_KEY);
    let dropped = 0;
    if (format.value !== DISK_FORMAT) {
      dropped = await dropAll(kv);
      await kv.set(FORMAT_KEY, DISK_FORMAT);
    }
    return new DiskTier(kv, await storedTotals(kv), options, dropped);
  }

  /** Resolves once the trims and sweeps under way are done. */
  idle(): Promise<void> {
    return this.#trimming.catch(() => {});
  }

  get count(): number {
    return this.#count;
  }

  /** Bytes the stored answers hold (their encoded size). */
  get bytes(): number {
    return this.#bytes;
  }

  #over(): boolean {
    return this.#count > this.options.maxEntries || this.#bytes > (this.options.maxBytes ?? Infinity);
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
    const margin = this.options.kvExpiryMarginMs ?? EXPIRY_MARGIN_MS;
    const expireIn = Math.max(1000, answer.expiresAt - this.#clock.now() + margin);
    const index: IndexEntry = {
      storedAt: answer.storedAt,
      expiresAt: answer.expiresAt,
      size: bytes.length,
      model: answer.model,
    };
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
      .set(["cache", "o", answer.storedAt, key], bytes.length)
      .sum(BYTES_KEY, delta(bytes.length - (previous.value?.size ?? 0)));
    if (previous.value) op.delete(["cache", "o", previous.value.storedAt, key]);
    else op.sum(COUNT_KEY, ONE);
    if (!(await op.commit()).ok) return; // another writer stored the same answer meanwhile: theirs stands
    if (!previous.value) this.#count++;
    this.#bytes += bytes.length - (previous.value?.size ?? 0);
    if (previous.value?.version) await this.#deleteParts(key, previous.value);
    if (this.#over()) await this.trim();
  }

  /** Removes the oldest entries until at most `--cache-max-entries` remain, holding at most `--cache-max-bytes`. */
  trim(): Promise<void> {
    // One trim at a time: concurrent ones would remove the same oldest entries twice over.
    this.#trimming = this.#trimming.then(async () => {
      // Order keys of entries KV expired on its own come first (they are the oldest): they free count, not answers.
      while (this.#over()) {
        // Over the count, that many; over the bytes only, a batch at a time.
        const excess = Math.max(1, Math.min(500, this.#count - this.options.maxEntries));
        const { removed, gone } = await this.#removeOldest(excess, Infinity);
        this.options.onRemoved?.(removed, "evicted");
        if (gone) this.options.onRemoved?.(gone, "expired");
        if (removed + gone === 0) break;
      }
    });
    return this.#trimming;
  }

  /** Removes the entries stored before `now - ttlMs`; returns how many. */
  async sweep(ttlMs: number): Promise<number> {
    let removed = 0;
    await (this.#trimming = this.#trimming.then(async () => {
      // An entry is expired once `storedAt + ttl <= now`; the list's end bound is exclusive, hence the + 1.
      const pass = await this.#removeOldest(Infinity, this.#clock.now() - ttlMs + 1);
      removed = pass.removed + pass.gone;
      this.options.onRemoved?.(removed, "expired");
      // Reconcile with the stored sums (another process may share the store).
      [this.#count, this.#bytes] = await storedTotals(this.kv);
    }));
    return removed;
  }

  async #removeOldest(limit: number, storedBefore: number): Promise<Removed> {
    let removed = 0;
    let gone = 0;
    const entries = this.kv.list<number>(
      { prefix: ["cache", "o"], end: ["cache", "o", Math.min(storedBefore, Number.MAX_VALUE)] },
      { limit: limit === Infinity ? undefined : limit, batchSize: 500 },
    );
    for await (const { key: orderKey, value: size } of entries) {
      const [, , storedAt, key] = orderKey as [string, string, number, string];
      const index = await this.kv.get<IndexEntry>(["cache", "i", key]);
      // The entry goes if this order key is its current one (it may have been stored again since); if KV
      // already expired its index entry, only the order key and its count are left to remove.
      if (index.value && index.value.storedAt !== storedAt) {
        await this.kv.atomic().check(index).delete(orderKey).commit();
      } else if (await this.#remove(key, index, orderKey, size)) {
        if (index.value) removed++;
        else gone++;
      }
    }
    return { removed, gone };
  }

  /**
   * Removes, in one commit, an entry (if KV has not expired it already) with its order key, its count and its
   * bytes, then its parts; false if the entry changed meanwhile (nothing was removed).
   */
  async #remove(
    key: string,
    index: Deno.KvEntryMaybe<IndexEntry>,
    orderKey: Deno.KvKey,
    size: number,
  ): Promise<boolean> {
    const op = this.kv.atomic().check(index).delete(orderKey)
      .sum(COUNT_KEY, MINUS_ONE).sum(BYTES_KEY, delta(-size));
    if (index.value) op.delete(["cache", "i", key]);
    if (!(await op.commit()).ok) return false;
    this.#count = Math.max(0, this.#count - 1);
    this.#bytes = Math.max(0, this.#bytes - size);
    if (index.value?.version) await this.#deleteParts(key, index.value);
    return true;
  }

  /**
   * Removes the entries `filter` names (all of them, a model's, or one key); returns how many. Runs after the
   * trims and sweeps under way.
   */
  purge(filter: PurgeFilter): Promise<number> {
    const run = this.#trimming.then(async () => {
      let purged = 0;
      const keys = "key" in filter ? [filter.key] : (async function* (kv: Deno.Kv) {
        for await (const { key } of kv.list({ prefix: ["cache", "i"] }, { batchSize: 500 })) {
          yield key[2] as string;
        }
      })(this.kv);
      for await (const key of keys) {
        const index = await this.kv.get<IndexEntry>(["cache", "i", key]);
        if (!index.value || ("model" in filter && index.value.model !== filter.model)) continue;
        const orderKey = ["cache", "o", index.value.storedAt, key];
        if (await this.#remove(key, index, orderKey, index.value.size)) purged++;
      }
      return purged;
    });
    this.#trimming = run.then(() => {}, () => {});
    return run;
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

async function storedTotals(kv: Deno.Kv): Promise<[number, number]> {
  const [count, bytes] = await kv.getMany<[Deno.KvU64, Deno.KvU64]>([COUNT_KEY, BYTES_KEY]);
  const number = (entry: Deno.KvEntryMaybe<Deno.KvU64>) =>
    entry.value instanceof Deno.KvU64 ? Number(BigInt.asIntN(64, entry.value.value)) : 0;
  return [Math.max(0, number(count)), Math.max(0, number(bytes))];
}

/** Deletes every key of the tier (another format's); returns how many answers there were. */
async function dropAll(kv: Deno.Kv): Promise<number> {
  let answers = 0;
  let op = kv.atomic();
  let pending = 0;
  for await (const { key } of kv.list({ prefix: ["cache"] }, { batchSize: 500 })) {
    if (key[1] === "i") answers++;
    op.delete(key);
    if (++pending === 500) {
      await commit(op);
      op = kv.atomic();
      pending = 0;
    }
  }
  if (pending) await commit(op);
  return answers;
}

async function commit(op: Deno.AtomicOperation): Promise<void> {
  const result = await op.commit();
  if (!result.ok) throw new Error("Deno KV refused a cache write");
}
