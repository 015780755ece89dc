/**
 * The memory tier: decoded answers bounded by entry count and by bytes, kept by W-TinyLFU (Einziger, Friedman,
 * Manes 2017; the policy of Caffeine), which on skewed traffic keeps far more of what will be read again than
 * LRU, and lets a scan of one-off reads pass without flushing what is hot:
 * - an answer read from a lower tier (Redis, disk) enters a small **window** LRU (1% of the entries), where a new
 *   burst gets its chance;
 * - the window's oldest entry is then the **candidate** for the main space, an SLRU of **probation** (20%) and
 *   **protected** (80%: entries read again while in probation). It is admitted if the main space has room, or if
 *   it was read lately more often than the **victim** (probation's oldest; protected's if probation is empty),
 *   by the frequency sketch; or if it was read at least `hotThreshold` times lately (`--cache-hot-threshold`).
 *   Otherwise it is dropped (it stays on disk);
 * - a **popularity shift** (a new system prompt goes viral): when, over a stretch of `maxEntries` reads, the reads
 *   that miss memory for keys read before rise above twice their usual share, the sketch forgets its counts and
 *   the protected entries return to probation, so the new hot keys are not held off by counts of the old ones.
 *   One-off reads (a scan) are not reads of keys read before, and do not trigger it.
 */
import type { CachedAnswer } from "./entry.ts";
import { FrequencySketch } from "./frequency_sketch.ts";

export interface MemoryTierOptions {
  maxEntries: number;
  maxBytes: number;
  /** A candidate read at least this often lately is admitted whatever it would push out. @default 15 */
  hotThreshold?: number;
  /** Called for every entry pushed out to make room (not for expiry or replacement). */
  onEvict?(key: string, answer: CachedAnswer): void;
}

/** Approximate memory an answer takes: its body, its headers, and the bookkeeping around it. */
export function answerSize(answer: CachedAnswer): number {
  let size = answer.body.byteLength + 256;
  for (const [name, value] of answer.headers) size += name.length + value.length;
  return size;
}

const WINDOW_SHARE = 0.01;
const PROTECTED_SHARE = 0.8;

interface Resident {
  answer: CachedAnswer;
  size: number;
}

/** Each segment is a Map in least-recently-used-first order (a read moves its key to the end). */
type Segment = Map<string, Resident>;

export class MemoryTier {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly hotThreshold: number;
  readonly sketch: FrequencySketch;
  readonly #window: Segment = new Map();
  readonly #probation: Segment = new Map();
  readonly #protected: Segment = new Map();
  readonly #windowCapacity: number;
  readonly #mainCapacity: number;
  readonly #protectedCapacity: number;
  readonly #onEvict?: (key: string, answer: CachedAnswer) => void;
  #bytes = 0;
  /** Reads since the shift check, and the misses among them for keys read before. */
  #reads = 0;
  #repeatMisses = 0;
  /** The usual share of such misses (moving average); negative until the first stretch ends. */
  #usualRepeatMisses = -1;
  #shifts = 0;

  constructor(options: MemoryTierOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.hotThreshold = options.hotThreshold ?? 15;
    this.#onEvict = options.onEvict;
    this.#windowCapacity = Math.max(1, Math.round(options.maxEntries * WINDOW_SHARE));
    this.#mainCapacity = Math.max(1, options.maxEntries - this.#windowCapacity);
    this.#protectedCapacity = Math.floor(this.#mainCapacity * PROTECTED_SHARE);
    this.sketch = new FrequencySketch(options.maxEntries);
  }

  /** The answer if present and not expired at `now` (epoch ms); every call counts as a read of `key`. */
  get(key: string, now: number): CachedAnswer | undefined {
    const before = this.sketch.increment(key);
    const resident = this.#window.get(key) ?? this.#protected.get(key) ?? this.#probation.get(key);
    if (resident && resident.answer.expiresAt <= now) this.delete(key);
    else if (resident) this.#touch(key, resident);
    else if (before >= 2) this.#repeatMisses++;
    if (++this.#reads >= this.maxEntries) this.#checkForShift();
    return resident && resident.answer.expiresAt > now ? resident.answer : undefined;
  }

  /**
   * Offers an answer just read from a lower tier (its read was counted by `get`). Returns whether it entered
   * memory (the window); whether it stays is decided when the window passes it on.
   */
  admit(key: string, answer: CachedAnswer): boolean {
    const size = answerSize(answer);
    if (size > this.maxBytes) return false;
    this.delete(key);
    this.#window.set(key, { answer, size });
    this.#bytes += size;
    if (this.#window.size > this.#windowCapacity) {
      const [candidate, resident] = first(this.#window)!;
      this.#window.delete(candidate);
      this.#offerToMain(candidate, resident);
    }
    this.#fitBytes();
    return this.has(key);
  }

  has(key: string): boolean {
    return this.#segmentOf(key) !== undefined;
  }

  /** Replaces the answer of a key memory holds (a newer store), where it is. */
  replace(key: string, answer: CachedAnswer): void {
    const segment = this.#segmentOf(key);
    const resident = segment?.get(key);
    if (!segment || !resident) return;
    const size = answerSize(answer);
    this.#bytes += size - resident.size;
    segment.set(key, { answer, size });
    this.#fitBytes();
  }

  delete(key: string): void {
    const segment = this.#segmentOf(key);
    const resident = segment?.get(key);
    if (!segment || !resident) return;
    segment.delete(key);
    this.#bytes -= resident.size;
  }

  /** Removes the entries `matches` picks; returns how many. */
  purge(matches: (key: string, answer: CachedAnswer) => boolean): number {
    let purged = 0;
    for (const segment of [this.#window, this.#probation, this.#protected]) {
      for (const [key, resident] of [...segment]) {
        if (!matches(key, resident.answer)) continue;
        segment.delete(key);
        this.#bytes -= resident.size;
        purged++;
      }
    }
    return purged;
  }

  get full(): boolean {
    return this.size >= this.maxEntries;
  }

  get size(): number {
    return this.#window.size + this.#probation.size + this.#protected.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The segments' sizes and how many popularity shifts were seen (stats). */
  get segments(): { window: number; probation: number; protected: number; shifts: number } {
    return {
      window: this.#window.size,
      probation: this.#probation.size,
      protected: this.#protected.size,
      shifts: this.#shifts,
    };
  }

  #segmentOf(key: string): Segment | undefined {
    if (this.#window.has(key)) return this.#window;
    if (this.#probation.has(key)) return this.#probation;
    if (this.#protected.has(key)) return this.#protected;
    return undefined;
  }

  /** A read of a resident: most recent in its segment; read again in probation, it earns protection. */
  #touch(key: string, resident: Resident): void {
    if (this.#probation.delete(key)) {
      this.#protected.set(key, resident);
      if (this.#protected.size > this.#protectedCapacity) {
        const [demoted, entry] = first(this.#protected)!;
        this.#protected.delete(demoted);
        this.#probation.set(demoted, entry);
      }
      return;
    }
    const segment = this.#window.has(key) ? this.#window : this.#protected;
    segment.delete(key);
    segment.set(key, resident);
  }

  #offerToMain(candidate: string, resident: Resident): void {
    if (this.#probation.size + this.#protected.size < this.#mainCapacity) {
      this.#probation.set(candidate, resident);
      return;
    }
    const from = this.#probation.size ? this.#probation : this.#protected;
    const [victim, victimEntry] = first(from)!;
    const frequency = this.sketch.frequency(candidate);
    if (frequency > this.sketch.frequency(victim) || frequency >= this.hotThreshold) {
      this.#evict(from, victim, victimEntry);
      this.#probation.set(candidate, resident);
    } else {
      this.#bytes -= resident.size;
      this.#onEvict?.(candidate, resident.answer);
    }
  }

  /** Over the byte bound: push out probation's oldest first, then protected's, then the window's. */
  #fitBytes(): void {
    while (this.#bytes > this.maxBytes) {
      const from = [this.#probation, this.#protected, this.#window].find((segment) => segment.size > 0);
      if (!from) return;
      const [key, resident] = first(from)!;
      this.#evict(from, key, resident);
    }
  }

  #evict(from: Segment, key: string, resident: Resident): void {
    from.delete(key);
    this.#bytes -= resident.size;
    this.#onEvict?.(key, resident.answer);
  }

  #checkForShift(): void {
    const share = this.#repeatMisses / this.#reads;
    if (this.#usualRepeatMisses >= 0 && share > 2 * this.#usualRepeatMisses + 0.01) {
      this.#shifts++;
      this.sketch.clear();
      for (const [key, resident] of this.#protected) this.#probation.set(key, resident);
      this.#protected.clear();
      this.#usualRepeatMisses = share;
    } else {
      this.#usualRepeatMisses = this.#usualRepeatMisses < 0
        ? share
        : 0.8 * this.#usualRepeatMisses + 0.2 * share;
    }
    this.#reads = 0;
    this.#repeatMisses = 0;
  }
}

function first(segment: Segment): [string, Resident] | undefined {
  for (const entry of segment) return entry;
  return undefined;
}
