/**
 * Issue 22: cache housekeeping for operators. `--cache-max-bytes` bounds the disk tier with large entries; a purge
 * by model removes only that model's answers (memory and disk), needs the admin key and is refused without one;
 * `deno task cache:compact` shrinks the file of a stopped bridge with its entries intact; `cache:purge` works
 * on a stopped bridge and refuses a running one. (A format mismatch starting empty: disk_count_test.ts.)
 */
import { DiskTier } from "../src/cache/disk.ts";
import type { CachedAnswer } from "../src/cache/entry.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { spawnBridge, startTestBridge, tempCacheDir } from "./harness.ts";
import { FakeUpstream } from "./fake_upstream.ts";

function answer(size: number, model = "m"): CachedAnswer {
  const now = Date.now();
  return {
    status: 200,
    headers: [["content-type", "application/json"]],
    body: new Uint8Array(size).fill(120),
    storedAt: now,
    expiresAt: now + 600_000,
    tokens: 0,
    model,
  };
}

Deno.test("--cache-max-bytes: large entries push out the oldest, the bytes stay under the bound", async () => {
  await using dir = await tempCacheDir();
  const kv = await Deno.openKv(`${dir.path}/bytes.kv`);
  const disk = await DiskTier.open(kv, { maxEntries: 1000, maxBytes: 1024 * 1024 });
  for (let i = 0; i < 12; i++) await disk.set(`big-${i}`, answer(200 * 1024)); // 12 x 200 KiB, over 1 MiB
  assert(disk.bytes <= 1024 * 1024, `${disk.bytes} bytes stored`);
  assertEquals(disk.count, 5);
  for (let i = 0; i < 7; i++) {
    assertEquals(await disk.get(`big-${i}`), undefined, `big-${i} was among the oldest`);
  }
  for (let i = 7; i < 12; i++) assertEquals((await disk.get(`big-${i}`))?.status, 200);
  kv.close();
});

Deno.test("admin: purge by model needs the admin key, removes only that model's answers from memory and disk", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge([
    "--enable-cache",
    "--cache-dir",
    dir.path,
    "--cache-memory-entries",
    "16",
    "--admin-key",
    "adm-secret-1234",
  ]);
  const ask = (model: string, n: number) =>
    t.post("/v1/chat/completions", { model, messages: [{ role: "user", content: `q${n}` }] });
  for (const model of ["old-model", "new-model"]) {
    for (let n = 0; n < 3; n++) {
      await (await ask(model, n)).body?.cancel();
      await t.cacheSettled();
    }
  }
  // Read one answer a few times so it sits in the memory tier too.
  for (let i = 0; i < 20; i++) await (await ask("old-model", 0)).body?.cancel();
  const refused = await fetch(`${t.url}/admin/cache/purge`, {
    method: "POST",
    body: '{"model":"old-model"}',
  });
  assertEquals(refused.status, 401);
  await refused.body?.cancel();
  const wrong = await fetch(`${t.url}/admin/cache/stats`, { headers: { authorization: "Bearer nope" } });
  assertEquals(wrong.status, 401);
  await wrong.body?.cancel();
  const admin = { authorization: "Bearer adm-secret-1234" };
  const stats = await (await fetch(`${t.url}/admin/cache/stats`, { headers: admin })).json();
  assertEquals(stats.entries.disk, 6);
  assert(stats.hitRatio.total > 0 && typeof stats.promotionThreshold === "number", JSON.stringify(stats));
  const purge = await fetch(`${t.url}/admin/cache/purge`, {
    method: "POST",
    headers: admin,
    body: '{"model":"old-model"}',
  });
  const purged = (await purge.json()).purged;
  assertEquals(purged.disk, 3);
  const calls = t.upstream.calls;
  for (let n = 0; n < 3; n++) {
    const old = await ask("old-model", n);
    assertEquals(old.headers.get("x-cache"), "MISS", `old-model q${n}`);
    await old.body?.cancel();
    const kept = await ask("new-model", n);
    assertMatch(kept.headers.get("x-cache")!, /^HIT/, `new-model q${n}`);
    await kept.body?.cancel();
  }
  assertEquals(t.upstream.calls, calls + 3);
  assert(!t.logs.join("\n").includes("adm-secret-1234"), "the admin key is never logged");
});

Deno.test("admin endpoints do not exist without --admin-key", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  for (const [method, path] of [["GET", "/admin/cache/stats"], ["POST", "/admin/cache/purge"]]) {
    const response = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: "Bearer anything" },
    });
    assertEquals(response.status, 404, path);
    await response.body?.cancel();
  }
});

async function task(name: string, ...args: string[]): Promise<{ code: number; output: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", name, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return {
    code: output.code,
    output: new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr),
  };
}

Deno.test("cache:compact shrinks the file of a stopped bridge, entries intact; cache:purge refuses a running one", async () => {
  await using dir = await tempCacheDir();
  const path = `${dir.path}/cache.kv`;
  {
    const kv = await Deno.openKv(path);
    const disk = await DiskTier.open(kv, { maxEntries: 100_000 });
    for (let i = 0; i < 400; i++) await disk.set(`k${i}`, answer(40 * 1024, i % 2 ? "a" : "b"));
    assertEquals(await disk.purge({ model: "b" }), 200);
    kv.close();
  }
  const before = Deno.statSync(path).size;
  const compacted = await task("cache:compact", "--cache-dir", dir.path);
  assertEquals(compacted.code, 0, compacted.output);
  const after = Deno.statSync(path).size;
  assert(after < before * 0.7, `${before} -> ${after} bytes`);
  {
    const kv = await Deno.openKv(path);
    const disk = await DiskTier.open(kv, { maxEntries: 100_000 });
    assertEquals(disk.count, 200);
    for (let i = 1; i < 400; i += 2) assertEquals((await disk.get(`k${i}`))?.body.length, 40 * 1024);
    kv.close();
  }
  // A running bridge keeps its store: the tasks refuse; stopped, purge works.
  const upstream = new FakeUpstream();
  const bridge = await spawnBridge(upstream.url, "--enable-cache", "--cache-dir", dir.path);
  try {
    const refused = await task("cache:purge", "--cache-dir", dir.path);
    assertEquals(refused.code, 2);
    assertMatch(refused.output, /stop it first/);
  } finally {
    bridge.process.kill("SIGTERM");
    await bridge.process.status;
    await upstream.close();
  }
  const purged = await task("cache:purge", "--cache-dir", dir.path, "--model", "a");
  assertEquals(purged.code, 0, purged.output);
  assertMatch(purged.output, /purged 200 answer/);
});
