/**
 * How often each key was read lately, in a fixed amount of memory: a count-min sketch of 4-bit counters (4 rows,
 * the smallest of a key's 4 counters is its estimate, at most 15) behind a doorkeeper bit set (a key's first
 * read only sets its doorkeeper bits, so the many keys read once never reach the counters). Every `samplePeriod`
 * reads, every counter is halved and the doorkeeper cleared: the counts follow what is read now, not what was read
 * an hour ago. This is TinyLFU's frequency filter (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient Cache
 * Admission Policy", 2017).
 */

/** The largest count a counter holds. */
export const MAX_COUNT = 15;

export class FrequencySketch {
  /** Rows × width counters, one byte each (4 bits used): 256 KiB at the default 8192 memory entries. */
  readonly #counters: Uint8Array;
  readonly #doorkeeper: Uint32Array;
  readonly #mask: number;
  readonly #doorkeeperMask: number;
  readonly #samplePeriod: number;
  readonly #hashes = new Uint32Array(4);
  #reads = 0;

  /** Sized for a cache of `entries`: counters 8× as many (a power of two), halved every 10× as many reads. */
  constructor(entries: number) {
    const width = Math.min(1 << 22, Math.max(1 << 10, nextPowerOfTwo(entries * 8)));
    this.#counters = new Uint8Array(width * 4);
    this.#mask = width - 1;
    this.#doorkeeper = new Uint32Array(width / 4); // width × 8 bits
    this.#doorkeeperMask = width * 8 - 1;
    this.#samplePeriod = Math.max(1000, entries * 10);
  }

  /** Memory the sketch holds, in bytes (fixed at construction). */
  get bytes(): number {
    return this.#counters.byteLength + this.#doorkeeper.byteLength;
  }

  /** The estimated reads of `key` since about the last halving (the doorkeeper's one included). */
  frequency(key: string): number {
    const hashes = this.#hash(key);
    return this.#least(hashes) + (this.#inDoorkeeper(hashes) ? 1 : 0);
  }

  /** Counts one read of `key`; returns the key's frequency before it. */
  increment(key: string): number {
    const hashes = this.#hash(key);
    const least = this.#least(hashes);
    const seen = this.#inDoorkeeper(hashes);
    if (!seen) {
      this.#doorkeeper[(hashes[0] & this.#doorkeeperMask) >>> 5] |= 1 << (hashes[0] & 31);
      this.#doorkeeper[(hashes[1] & this.#doorkeeperMask) >>> 5] |= 1 << (hashes[1] & 31);
    } else if (least < MAX_COUNT) {
      // Conservative update: raise only the counters at the key's minimum (less overcounting from collisions).
      for (let row = 0; row < 4; row++) {
        const slot = this.#slot(row, hashes[row]);
        if (this.#counters[slot] === least) this.#counters[slot] = least + 1;
      }
    }
    if (++this.#reads >= this.#samplePeriod) this.halve();
    return least + (seen ? 1 : 0);
  }

  /** Halves every count and clears the doorkeeper (ageing; also what a popularity shift asks for, twice). */
  halve(): void {
    for (let i = 0; i < this.#counters.length; i++) this.#counters[i] >>= 1;
    this.#doorkeeper.fill(0);
    this.#reads = 0;
  }

  /** Forgets every count. */
  clear(): void {
    this.#counters.fill(0);
    this.#doorkeeper.fill(0);
    this.#reads = 0;
  }

  /** The smallest of the key's counters: its count-min estimate. */
  #least(hashes: Uint32Array): number {
    let least = MAX_COUNT;
    for (let row = 0; row < 4; row++) least = Math.min(least, this.#counters[this.#slot(row, hashes[row])]);
    return least;
  }

  #inDoorkeeper(hashes: Uint32Array): boolean {
    const mask = this.#doorkeeperMask;
    return (this.#doorkeeper[(hashes[0] & mask) >>> 5] & (1 << (hashes[0] & 31))) !== 0 &&
      (this.#doorkeeper[(hashes[1] & mask) >>> 5] & (1 << (hashes[1] & 31))) !== 0;
  }

  #slot(row: number, hash: number): number {
    return row * (this.#mask + 1) + (hash & this.#mask);
  }

  /**
   * Four 32-bit hashes of the key. Cache keys are SHA-256 hex digests: their first 32 hex digits already are four
   * independent uniform 32-bit numbers. Any other key is hashed (FNV-1a, then mixed per row).
   */
  #hash(key: string): Uint32Array {
    const hashes = this.#hashes;
    if (key.length >= 32 && readHex(key, hashes)) return hashes;
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    for (let row = 0; row < 4; row++) {
      let x = Math.imul(h ^ (0x9e3779b9 * (row + 1)), 0x85ebca6b);
      x ^= x >>> 13;
      x = Math.imul(x, 0xc2b2ae35);
      hashes[row] = (x ^ (x >>> 16)) >>> 0;
    }
    return hashes;
  }
}

/** Reads the first 32 lowercase hex digits of `key` as four 32-bit numbers; false if one is not a hex digit. */
function readHex(key: string, into: Uint32Array): boolean {
  for (let row = 0; row < 4; row++) {
    let value = 0;
    for (let i = row * 8; i < row * 8 + 8; i++) {
      const code = key.charCodeAt(i);
      const digit = code <= 57 ? code - 48 : code - 87; // '0'-'9', 'a'-'f'
      if (digit < 0 || digit > 15 || (code > 57 && code < 97)) return false;
      value = (value << 4) | digit;
    }
    into[row] = value >>> 0;
  }
  return true;
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
