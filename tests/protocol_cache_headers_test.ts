/**
 * Issue 16, items 5 and 6: a hit replays only what describes the answer (never another request's
 * x-request-id, rate-limit headers, processing time or date), and X-Cache says exactly what happened.
 */
import { assert, assertEquals } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";

const chat = { model: "m", messages: [{ role: "user", content: "headers" }] };

Deno.test("a hit carries content-type, content-language, X-Cache and Age, and no per-request header", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  t.upstream.plan({
    headers: {
      "x-request-id": "req-first",
      "x-ratelimit-remaining-requests": "99",
      "openai-processing-ms": "321",
      "content-language": "en",
      "set-cookie": "session=abc",
    },
  });
  const first = await t.post("/v1/chat/completions", chat);
  await first.body?.cancel();
  assertEquals(first.headers.get("x-request-id"), "req-first", "the live answer keeps its own headers");
  await t.cacheSettled();
  const hit = await t.post("/v1/chat/completions", chat);
  await hit.body?.cancel();
  assertEquals(hit.headers.get("x-cache"), "HIT-DISK");
  assert(/^\d+$/.test(hit.headers.get("age") ?? ""));
  assertEquals(hit.headers.get("content-type"), first.headers.get("content-type"));
  assertEquals(hit.headers.get("content-language"), "en");
  for (
    const name of ["x-request-id", "x-ratelimit-remaining-requests", "openai-processing-ms", "set-cookie"]
  ) {
    assertEquals(hit.headers.get(name), null, name);
  }
});

Deno.test("X-Cache: MISS, then COALESCED only while the flight runs, then a HIT once it is over", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  t.upstream.always({ delayMs: 300 });
  const leader = t.post("/v1/chat/completions", chat);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const joiner = await t.post("/v1/chat/completions", chat);
  const first = await leader;
  await first.body?.cancel();
  await joiner.body?.cancel();
  assertEquals([first.headers.get("x-cache"), joiner.headers.get("x-cache")], ["MISS", "COALESCED"]);
  // Straight after: the answer may still be on its way to disk, but the flight is over: a hit.
  const after = await t.post("/v1/chat/completions", chat);
  await after.body?.cancel();
  assert(["HIT-MEMORY", "HIT-DISK"].includes(after.headers.get("x-cache")!), after.headers.get("x-cache")!);
  const bypass = await t.post("/v1/models", {});
  await bypass.body?.cancel();
  assertEquals(bypass.headers.get("x-cache"), "BYPASS");
  assertEquals(t.upstream.calls, 2);
});
