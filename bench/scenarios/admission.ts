/**
 * Memory-tier admission (issue 23), simulated on seeded traces: 1M distinct keys all on disk (every memory miss
 * is a disk hit, offered to memory), 5M requests, a memory tier of 8192 entries; TTL and disk capacity not
 * modelled. Policies: LRU (admits every answer read from disk, evicts the least recently used), the best static
 * per-minute threshold of a sweep, the original's adaptive threshold, and the bridge's W-TinyLFU (the product's
 * own MemoryTier). Zipf skews 0.8, 0.99, 1.2; a scan of 100k one-off keys interleaved with the Zipf(0.99)
 * traffic; a popularity shift halfway; the cost of the sketch per lookup and its memory.
 *
 * `deno run -A bench/scenarios/admission.ts` prints the table alone.
 */
import { createHash } from "node:crypto";
import type { CachedAnswer } from "../../src/cache/entry.ts";
import { FrequencySketch } from "../../src/cache/frequency_sketch.ts";
import { MemoryTier } from "../../src/cache/memory.ts";
import { HotPromotion } from "../lib/original_promotion.ts";
import type { Row } from "../lib/report.ts";
import { zipfTrace } from "../lib/traces.ts";

const KEYS = 1_000_000;
const REQUESTS = 5_000_000;
const MEMORY = 8192;
const SCAN = 100_000;
/** The trace's pace, for the per-minute rates of the threshold policies. */
const PER_SECOND = 1000;
const SWEPT_THRESHOLDS = [1, 2, 3, 4, 6, 8, 12];
const WINDOW = 10_000;

const ENTRY: CachedAnswer = {
  status: 200,
  headers: [],
  body: new Uint8Array(100),
  storedAt: 0,
  expiresAt: 1e15,
  tokens: 0,
};

/** A policy fed one request at a time: true when memory answered it. */
type Policy = (key: string, index: number) => boolean;

/** Cache keys as the bridge makes them (SHA-256 hex), made once. */
const NAMES = Array.from(
  { length: KEYS + SCAN },
  (_, id) => createHash("sha256").update(String(id)).digest("hex"),
);

function lru(): Policy {
  const memory = new Map<string, true>();
  return (key) => {
    if (memory.delete(key)) {
      memory.set(key, true);
      return true;
    }
    memory.set(key, true);
    if (memory.size > MEMORY) memory.delete(memory.keys().next().value!);
    return false;
  };
}

/** The former promotion over an LRU memory: a static threshold, or the original's adaptive rule. */
function threshold(value: number, adaptive: boolean): Policy {
  const clock = { t: 0, now: () => clock.t };
  const promotion = new HotPromotion({ threshold: value, clock, adaptive, adjustEveryMs: 10_000 });
  const memory = new Map<string, true>();
  return (key, index) => {
    clock.t = (index * 1000) / PER_SECOND;
    if (memory.delete(key)) {
      memory.set(key, true);
      promotion.recordMemoryRead(key);
      return true;
    }
    const fill = memory.size / MEMORY;
    const coldest = memory.size >= MEMORY ? memory.keys().next().value : undefined;
    if (promotion.recordRead(key, coldest, fill)) {
      memory.set(key, true);
      if (memory.size > MEMORY) promotion.recordEviction(evictOldest(memory));
    }
    promotion.adjust(fill);
    return false;
  };
}

function evictOldest(memory: Map<string, true>): string {
  const oldest = memory.keys().next().value!;
  memory.delete(oldest);
  return oldest;
}

/** The bridge's memory tier, as TieredCache drives it. */
function wTinyLfu(): Policy {
  const memory = new MemoryTier({ maxEntries: MEMORY, maxBytes: 1 << 30, hotThreshold: 12 });
  return (key) => {
    if (memory.get(key, 0)) return true;
    memory.admit(key, ENTRY);
    return false;
  };
}

/** Hit ratio (%) over the requests `counted` picks (all by default). */
function hitRatio(policy: Policy, trace: Int32Array, counted?: (index: number) => boolean): number {
  let hits = 0;
  let total = 0;
  for (let i = 0; i < trace.length; i++) {
    const hit = policy(NAMES[trace[i]], i);
    if (counted && !counted(i)) continue;
    total++;
    if (hit) hits++;
  }
  return (100 * hits) / total;
}

interface Named {
  name: string;
  make: () => Policy;
}

function bestStatic(trace: Int32Array): Named & { ratio: number } {
  const sample = trace.subarray(0, 1_000_000);
  let best = { value: SWEPT_THRESHOLDS[0], ratio: -1 };
  for (const value of SWEPT_THRESHOLDS) {
    const ratio = hitRatio(threshold(value, false), sample);
    if (ratio > best.ratio) best = { value, ratio };
  }
  const make = () => threshold(best.value, false);
  return { name: `static threshold ${best.value}`, make, ratio: hitRatio(make(), trace) };
}

export function admission(): Row[] {
  const rows: Row[] = [];
  const row = (
    metric: string,
    value: number,
    unit: string,
    detail?: string,
    target?: Row["target"],
  ): void => {
    rows.push({ scenario: "admission", metric, value, unit, detail, target });
  };
  for (const skew of [0.8, 0.99, 1.2]) {
    const trace = zipfTrace(KEYS, REQUESTS, skew, 7);
    const base = hitRatio(lru(), trace);
    const swept = bestStatic(trace);
    const original = hitRatio(threshold(12, true), trace);
    const ours = hitRatio(wTinyLfu(), trace);
    row(`zipf ${skew}: LRU`, base, "%");
    row(`zipf ${skew}: best static (swept)`, swept.ratio, "%", swept.name);
    row(`zipf ${skew}: original's adaptive rule`, original, "%");
    row(`zipf ${skew}: W-TinyLFU`, ours, "%");
    row(`zipf ${skew}: W-TinyLFU - LRU`, ours - base, "points", undefined, {
      op: ">=",
      value: skew === 0.99 ? 5 : 0,
    });
  }

  // A scan of 100k one-off keys, spread evenly through the Zipf(0.99) traffic.
  const zipf = zipfTrace(KEYS, REQUESTS, 0.99, 7);
  const mixed = new Int32Array(REQUESTS + SCAN);
  const isScan = new Uint8Array(REQUESTS + SCAN);
  const every = Math.floor(REQUESTS / SCAN);
  for (let i = 0, z = 0, s = 0; i < mixed.length; i++) {
    if (s < SCAN && z > 0 && z % every === 0 && !isScan[i - 1]) {
      mixed[i] = KEYS + s++;
      isScan[i] = 1;
    } else mixed[i] = zipf[z++];
  }
  for (const { name, make } of [{ name: "LRU", make: lru }, { name: "W-TinyLFU", make: wTinyLfu }]) {
    const drop = hitRatio(make(), zipf) - hitRatio(make(), mixed, (i) => !isScan[i]);
    row(
      `scan of 100k: ${name} drop`,
      drop,
      "points",
      "Zipf(0.99) requests' hit ratio, without - with the scan",
      {
        op: "<=",
        value: name === "LRU" ? Infinity : 1,
      },
    );
  }

  // A popularity shift halfway: another seed ranks the keys anew.
  const shifted = new Int32Array(REQUESTS);
  shifted.set(zipf.subarray(0, REQUESTS / 2));
  shifted.set(zipfTrace(KEYS, REQUESTS / 2, 0.99, 11), REQUESTS / 2);
  const recovery: Record<string, number> = {};
  for (const { name, make } of [{ name: "LRU", make: lru }, { name: "W-TinyLFU", make: wTinyLfu }]) {
    recovery[name] = recoveryAfterShift(make(), shifted);
    row(`shift: ${name} recovery`, recovery[name], "requests", "to within 2 points of its steady state");
  }
  row("shift: W-TinyLFU / LRU recovery", recovery["W-TinyLFU"] / recovery.LRU, "×", undefined, {
    op: "<=",
    value: 2,
  });

  const sketch = new FrequencySketch(MEMORY);
  const started = performance.now();
  const lookups = 2_000_000;
  for (let i = 0; i < lookups; i++) sketch.increment(NAMES[zipf[i]]);
  const perLookupNs = ((performance.now() - started) * 1e6) / lookups;
  row("sketch: cost per lookup", perLookupNs, "ns", "count-min increment of a SHA-256 key", {
    op: "<=",
    value: 1000,
  });
  row("sketch: memory at 8192 entries", sketch.bytes / 1024, "KiB", undefined, { op: "<=", value: 1024 });
  return rows;
}

/** Requests after the shift until the hit ratio over 3 windows of 10k is within 2 points of its final level. */
function recoveryAfterShift(policy: Policy, trace: Int32Array): number {
  const half = trace.length / 2;
  for (let i = 0; i < half; i++) policy(NAMES[trace[i]], i);
  const windows: number[] = [];
  for (let start = half; start < trace.length; start += WINDOW) {
    let hits = 0;
    for (let i = start; i < start + WINDOW; i++) if (policy(NAMES[trace[i]], i)) hits++;
    windows.push((100 * hits) / WINDOW);
  }
  const tail = windows.slice(-100);
  const steady = tail.reduce((a, b) => a + b) / tail.length;
  for (let i = 0; i + 2 < windows.length; i++) {
    if ((windows[i] + windows[i + 1] + windows[i + 2]) / 3 >= steady - 2) return i * WINDOW;
  }
  return Infinity;
}

if (import.meta.main) console.table(admission());
