/**
 * Issue 15, item 4: the disk tier's entry count cannot drift, whatever KV expires on its own: under churn with
 * a short TTL, after downtime past the TTL, and across restarts; `--cache-max-entries` still evicts the oldest.
 */
import { DiskTier } from "../src/cache/disk.ts";
import type { CachedAnswer } from "../src/cache/entry.ts";
import { assertEquals } from "./assert.ts";
import { tempCacheDir } from "./harness.ts";

const encoder = new TextEncoder();

function answer(text: string, ttlMs: number): CachedAnswer {
  const now = Date.now();
  return {
    status: 200,
    headers: [["content-type", "application/json"]],
    body: encoder.encode(`{"a":"${text}"}`),
    storedAt: now,
    expiresAt: now + ttlMs,
    tokens: 0,
  };
}

/** What is really stored: index entries KV still holds. */
async function realEntries(kv: Deno.Kv): Promise<number> {
  let count = 0;
  for await (const _ of kv.list({ prefix: ["cache", "i"] })) count++;
  return count;
}

const open = async (path: string, maxEntries: number) => {
  const kv = await Deno.openKv(path);
  return { kv, disk: await DiskTier.open(kv, { maxEntries, kvExpiryMarginMs: 0 }) };
};

Deno.test("disk count: downtime past the TTL, then a restart: the count follows what is stored", async () => {
  await using dir = await tempCacheDir();
  const path = `${dir.path}/count.kv`;
  {
    const { kv, disk } = await open(path, 50);
    for (let i = 0; i < 50; i++) await disk.set(`old-${i}`, answer(`old ${i}`, 100));
    assertEquals(disk.count, 50);
    kv.close();
  }
  // Down past the entries' expiry: KV drops them on its own at the next open (its expireIn is at least 1 s).
  await new Promise((resolve) => setTimeout(resolve, 1500));
  {
    const { kv, disk } = await open(path, 50);
    assertEquals(await realEntries(kv), 0, "KV expired the entries itself");
    await disk.sweep(100);
    assertEquals(disk.count, 0, "the sweep at open took them out of the count");
    // 50 new answers fit, and every one of them is served (before the fix: each store evicted at once).
    for (let i = 0; i < 50; i++) await disk.set(`new-${i}`, answer(`new ${i}`, 60_000));
    let hits = 0;
    for (let i = 0; i < 50; i++) if (await disk.get(`new-${i}`)) hits++;
    assertEquals(hits, 50);
    assertEquals(disk.count, 50);
    kv.close();
  }
  {
    const { kv, disk } = await open(path, 50);
    assertEquals([disk.count, await realEntries(kv)], [50, 50], "the count survives a restart exactly");
    kv.close();
  }
});

Deno.test("disk count: stale order keys are trimmed before live answers, and the oldest live ones go first", async () => {
  await using dir = await tempCacheDir();
  const path = `${dir.path}/trim.kv`;
  {
    const { kv, disk } = await open(path, 20);
    for (let i = 0; i < 20; i++) await disk.set(`stale-${i}`, answer(`stale ${i}`, 100));
    kv.close();
  }
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const { kv, disk } = await open(path, 20);
  // No sweep this time: stores push the count over the limit and the trim must find the dead entries first.
  for (let i = 0; i < 25; i++) await disk.set(`live-${i}`, answer(`live ${i}`, 60_000));
  assertEquals(disk.count, 20);
  assertEquals(await realEntries(kv), 20);
  for (let i = 0; i < 5; i++) {
    assertEquals(await disk.get(`live-${i}`), undefined, `live-${i} was the oldest`);
  }
  for (let i = 5; i < 25; i++) assertEquals((await disk.get(`live-${i}`))?.status, 200, `live-${i} stays`);
  kv.close();
});

Deno.test("disk count: churn with a short TTL keeps the count equal to what is stored", async () => {
  await using dir = await tempCacheDir();
  const { kv, disk } = await open(`${dir.path}/churn.kv`, 30);
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 40; i++) await disk.set(`r${round}-${i % 25}`, answer(`${round} ${i}`, 50));
    await new Promise((resolve) => setTimeout(resolve, 60));
    await disk.sweep(50);
    assertEquals(disk.count, await realEntries(kv), `round ${round}`);
  }
  kv.close();
});

Deno.test("disk format: a store of another layout version is emptied at open, and says how much it dropped", async () => {
  await using dir = await tempCacheDir();
  const path = `${dir.path}/old.kv`;
  const kv = await Deno.openKv(path);
  await kv.set(["cache", "format"], 1);
  await kv.set(["cache", "n"], 3);
  for (let i = 0; i < 3; i++) {
    await kv.set(["cache", "i", `k${i}`], { storedAt: 1, expiresAt: Date.now() + 1e6, size: 1 });
  }
  await kv.set(["job", "t", "fp"], { state: "done" });
  const disk = await DiskTier.open(kv, { maxEntries: 100 });
  assertEquals([disk.droppedAtOpen, disk.count, await realEntries(kv)], [3, 0, 0]);
  assertEquals((await kv.get(["job", "t", "fp"])).value !== null, true, "other keys are left alone");
  kv.close();
});
