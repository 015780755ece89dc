/**
 * The memory tier's admission (W-TinyLFU, docs/cache.md#memory-tier-admission): the frequency sketch, the
 * admission decision, and the policy on small deterministic traces.
 */
import { createHash } from "node:crypto";
import type { CachedAnswer } from "../src/cache/entry.ts";
import { FrequencySketch, MAX_COUNT } from "../src/cache/frequency_sketch.ts";
import { MemoryTier } from "../src/cache/memory.ts";
import { assert, assertEquals } from "./assert.ts";

const answer = (body = "{}", expiresAt = 1e12): CachedAnswer => ({
  status: 200,
  headers: [],
  body: new TextEncoder().encode(body),
  storedAt: 0,
  expiresAt,
  tokens: 0,
});

/** A cache key as the bridge makes them: a SHA-256 in hex. */
const hexKey = (n: number) => createHash("sha256").update(String(n)).digest("hex");

/** Reads `key` as the tiered cache does: memory first, and on a miss the lower tier's answer is offered. */
function read(memory: MemoryTier, key: string): boolean {
  if (memory.get(key, 0)) return true;
  memory.admit(key, answer());
  return false;
}

Deno.test("sketch: counts reads (the first only in the doorkeeper), caps at 15, halves, clears", () => {
  const sketch = new FrequencySketch(1024);
  for (const key of ["plain key", hexKey(7)]) {
    assertEquals(sketch.frequency(key), 0);
    assertEquals(sketch.increment(key), 0, "the count before the read");
    assertEquals(sketch.frequency(key), 1);
    for (let i = 0; i < 5; i++) sketch.increment(key);
    assertEquals(sketch.frequency(key), 6);
    for (let i = 0; i < 40; i++) sketch.increment(key);
    assertEquals(sketch.frequency(key), MAX_COUNT + 1, "15 counted, plus the doorkeeper's read");
  }
  sketch.halve();
  assertEquals(sketch.frequency(hexKey(7)), 7, "halved, and the doorkeeper cleared");
  sketch.clear();
  assertEquals(sketch.frequency(hexKey(7)), 0);
  assertEquals(sketch.frequency("never read"), 0);
});

Deno.test("sketch: halves by itself every 10 × entries reads; its memory is fixed and small", () => {
  const sketch = new FrequencySketch(1000);
  const key = hexKey(1);
  for (let i = 0; i < 9; i++) sketch.increment(key);
  for (let i = 0; sketch.frequency(key) === 9 && i < 20_000; i++) sketch.increment(hexKey(1000 + i));
  assertEquals(sketch.frequency(key), 4, "halved once, after 10,000 reads");
  assert(new FrequencySketch(8192).bytes <= 1024 * 1024, "≤ 1 MiB at the default 8192 entries");
});

Deno.test("memory tier: bounded by entries and by bytes; expired entries are not served", () => {
  const evicted: string[] = [];
  const memory = new MemoryTier({ maxEntries: 3, maxBytes: 10_000, onEvict: (key) => evicted.push(key) });
  for (const key of ["a", "b", "c", "d"]) memory.admit(key, answer());
  assertEquals(memory.size, 3);
  assertEquals(evicted.length, 1);
  assertEquals(memory.admit("huge", answer("x".repeat(20_000))), false, "above the byte bound: never kept");
  assertEquals(memory.has("huge"), false);
  for (let i = 0; i < 30; i++) memory.admit(`big${i}`, answer("x".repeat(3000)));
  assert(memory.bytes <= 10_000, `bytes ${memory.bytes}`);
  memory.admit("short", answer("{}", 100));
  assertEquals(memory.get("short", 99) !== undefined, true);
  assertEquals(memory.get("short", 100), undefined);
  assertEquals(memory.has("short"), false);
});

Deno.test("admission: with room, every answer is taken; when full, only one read more often than its victim", () => {
  const memory = new MemoryTier({ maxEntries: 100, maxBytes: 1 << 20 });
  for (let n = 0; n < 100; n++) read(memory, hexKey(n));
  assertEquals(memory.size, 100, "memory with room takes every answer");
  // A key read once now cannot push out an entry read as often; read three times lately, it can.
  read(memory, hexKey(500));
  read(memory, hexKey(501)); // pushes 500 out of the window: it was read once, like its victim: dropped
  assertEquals(memory.has(hexKey(500)), false);
  for (let i = 0; i < 3; i++) memory.get(hexKey(600), 0);
  read(memory, hexKey(600));
  read(memory, hexKey(602)); // 600 leaves the window as a candidate read 4 times: admitted
  assertEquals(memory.has(hexKey(600)), true);
});

Deno.test("admission: --cache-hot-threshold admits a key read that often lately, whatever it pushes out", () => {
  const memory = new MemoryTier({ maxEntries: 100, maxBytes: 1 << 20, hotThreshold: 2 });
  for (let n = 0; n < 100; n++) for (let i = 0; i < 5; i++) read(memory, hexKey(n)); // residents read 5 times
  memory.get(hexKey(700), 0);
  read(memory, hexKey(700));
  read(memory, hexKey(701));
  assertEquals(memory.has(hexKey(700)), true, "read twice: hot enough by the operator's threshold");
});

Deno.test("policy: a scan of one-off keys does not evict a hot key; a newly hot key is admitted", () => {
  const memory = new MemoryTier({ maxEntries: 200, maxBytes: 1 << 24 });
  const hot = Array.from({ length: 150 }, (_, n) => hexKey(n));
  for (let round = 0; round < 5; round++) for (const key of hot) read(memory, key);
  // The scan: 5,000 one-off keys (25 times what memory holds), while the hot keys go on being read.
  let hotHits = 0;
  for (let n = 0; n < 5000; n++) {
    read(memory, hexKey(100_000 + n));
    if (read(memory, hot[n % hot.length])) hotHits++;
  }
  assertEquals(hot.filter((key) => memory.has(key)).length, 150, "every hot key survived the scan");
  assertEquals(hotHits, 5000);
  const newcomer = hexKey(50_000);
  for (let i = 0; i < 6; i++) read(memory, newcomer);
  read(memory, hexKey(50_001));
  read(memory, hexKey(50_002));
  assertEquals(memory.has(newcomer), true, "read six times: it beats a one-off victim");
});

Deno.test("policy: when popularity shifts, the new hot set takes memory over from the old one", () => {
  const memory = new MemoryTier({ maxEntries: 100, maxBytes: 1 << 24 });
  const old = Array.from({ length: 90 }, (_, n) => hexKey(n));
  const fresh = Array.from({ length: 90 }, (_, n) => hexKey(10_000 + n));
  for (let round = 0; round < 30; round++) for (const key of old) read(memory, key);
  assertEquals(old.filter((key) => memory.has(key)).length, 90);
  let hits = 0;
  for (let round = 0; round < 30; round++) for (const key of fresh) if (read(memory, key)) hits++;
  assertEquals(memory.segments.shifts >= 1, true, "the shift was seen");
  assert(fresh.filter((key) => memory.has(key)).length >= 85, "the new hot set is in memory");
  assert(hits > 0.8 * 30 * 90, `hits on the new set: ${hits}`);
});
