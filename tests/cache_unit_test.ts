/** The cache's parts on their own: disk tier, promotion, key, entry encoding. */
import { DiskTier } from "../src/cache/disk.ts";
import {
  answerTokens,
  type CachedAnswer,
  decodeAnswer,
  encodeAnswer,
  isCompleteAnswer,
} from "../src/cache/entry.ts";
import { cacheKey, canonicalJson } from "../src/cache/key.ts";
import type { ProxyRequest } from "../src/core/request.ts";
import { Cancellation } from "../src/core/time.ts";
import { assert, assertEquals } from "./assert.ts";
import { tempCacheDir } from "./harness.ts";

const encoder = new TextEncoder();

function answer(body: string, storedAt: number, ttl = 30_000): CachedAnswer {
  return {
    status: 200,
    headers: [["content-type", "application/json"]],
    body: encoder.encode(body),
    storedAt,
    expiresAt: storedAt + ttl,
    tokens: 3,
  };
}

async function openDisk(dir: string, maxEntries: number, clock: { t: number }) {
  const kv = await Deno.openKv(`${dir}/test.kv`);
  const disk = await DiskTier.open(kv, { maxEntries, clock: { now: () => clock.t } });
  return { kv, disk, [Symbol.dispose]: () => kv.close() };
}

Deno.test("disk tier: expiry is checked on every read (injected clock, no sleeping)", async () => {
  await using dir = await tempCacheDir();
  const clock = { t: 1_000_000 };
  using store = await openDisk(dir.path, 100, clock);
  await store.disk.set("k", answer('{"a":1}', clock.t));
  assertEquals(new TextDecoder().decode((await store.disk.get("k"))!.body), '{"a":1}');
  clock.t += 29_999;
  assert(await store.disk.get("k"));
  clock.t += 1;
  assertEquals(await store.disk.get("k"), undefined);
  assertEquals(await store.disk.sweep(30_000), 1);
  assertEquals(store.disk.count, 0);
});

Deno.test("disk tier: --cache-max-entries evicts the oldest first; re-storing renews an entry", async () => {
  await using dir = await tempCacheDir();
  const clock = { t: 1_000_000 };
  using store = await openDisk(dir.path, 3, clock);
  for (const key of ["a", "b", "c"]) {
    clock.t += 10;
    await store.disk.set(key, answer(`"${key}"`, clock.t));
  }
  clock.t += 10;
  await store.disk.set("a", answer('"a2"', clock.t)); // a is now the newest
  clock.t += 10;
  await store.disk.set("d", answer('"d"', clock.t)); // one too many: b, the oldest, goes
  assertEquals(store.disk.count, 3);
  assertEquals(await store.disk.get("b"), undefined);
  for (const key of ["a", "c", "d"]) assert(await store.disk.get(key), `${key} kept`);
  assertEquals(new TextDecoder().decode((await store.disk.get("a"))!.body), '"a2"');
});

Deno.test("disk tier: large answers in parts; a missing part or a corrupt entry is a miss, not an error", async () => {
  await using dir = await tempCacheDir();
  const clock = { t: 1_000_000 };
  using store = await openDisk(dir.path, 100, clock);
  const big = "x".repeat(300_000);
  await store.disk.set("big", answer(big, clock.t));
  assertEquals((await store.disk.get("big"))!.body.length, big.length);
  // Lose one part, as a crash between writes could.
  const parts = await Array.fromAsync(store.kv.list({ prefix: ["cache", "p", "big"] }));
  assertEquals(parts.length, 5);
  await store.kv.delete(parts[2].key);
  assertEquals(await store.disk.get("big"), undefined);
  // Garbage where an entry should be.
  await store.kv.set(["cache", "i", "bad"], {
    storedAt: clock.t,
    expiresAt: clock.t + 1000,
    size: 3,
    inline: new Uint8Array([1, 2, 3]),
  });
  assertEquals(await store.disk.get("bad"), undefined);
});

Deno.test("disk tier: parts written without their index entry (a crash mid-write) stay invisible", async () => {
  await using dir = await tempCacheDir();
  const clock = { t: 1_000_000 };
  using store = await openDisk(dir.path, 100, clock);
  await store.kv.set(["cache", "p", "orphan", "v1", 0], encodeAnswer(answer('"x"', clock.t)));
  assertEquals(await store.disk.get("orphan"), undefined);
  assertEquals(store.disk.count, 0);
});

Deno.test("key: canonical (key order does not matter), ignores user and request_fingerprint, separates tenants", () => {
  assertEquals(canonicalJson({ b: [1, { d: 1, c: 2 }], a: "x" }), '{"a":"x","b":[1,{"c":2,"d":1}]}');
  const request = (json: Record<string, unknown>): ProxyRequest => ({
    method: "POST",
    path: "/v1/chat/completions",
    search: "",
    headers: new Headers(),
    body: null,
    kind: "openai-chat",
    json,
    cancellation: new Cancellation(),
    startedAt: 0,
  });
  const base = cacheKey(request({ model: "m", messages: [{ role: "user", content: "hi" }] }));
  assertEquals(base.length, 64);
  assertEquals(
    cacheKey(request({ messages: [{ content: "hi", role: "user" }], model: "m", user: "u1" })),
    base,
  );
  assertEquals(
    cacheKey(
      request({ model: "m", messages: [{ role: "user", content: "hi" }], request_fingerprint: "f" }),
    ),
    base,
  );
  assert(
    cacheKey(request({ model: "m", messages: [{ role: "user", content: "hi" }] }), "tenant-a") !== base,
  );
  assert(
    cacheKey(request({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true })) !==
      base,
  );
});

Deno.test("entry: encoding round-trips; completeness and tokens by format", () => {
  const original = answer('{"usage":{"total_tokens":42}}', 5);
  assertEquals(decodeAnswer(encodeAnswer(original)), original);
  assertEquals(decodeAnswer(new Uint8Array([0, 0, 0, 99, 1])), undefined);
  assertEquals(isCompleteAnswer("sse", encoder.encode("data: {}\n\ndata: [DONE]\n\n")), true);
  assertEquals(isCompleteAnswer("sse", encoder.encode("data: {}\n\n")), false);
  assertEquals(isCompleteAnswer("ndjson", encoder.encode('{"done":false}\n{"done":true}\n')), true);
  assertEquals(isCompleteAnswer("ndjson", encoder.encode('{"done":false}\n')), false);
  assertEquals(isCompleteAnswer(undefined, encoder.encode('{"cut":')), false);
  assertEquals(answerTokens(undefined, encoder.encode('{"usage":{"total_tokens":42}}')), 42);
  assertEquals(
    answerTokens("ndjson", encoder.encode('{"done":true,"eval_count":7,"prompt_eval_count":5}\n')),
    12,
  );
  assertEquals(
    answerTokens("sse", encoder.encode('data: {"usage":{"total_tokens":9}}\n\ndata: [DONE]\n\n')),
    9,
  );
});
