/**
 * The hit path (issue 20) does less per request without changing what a client sees: header pairs replace the
 * upstream's own X-Cache and Age, remembered paths and think-tag verdicts give the same answers as fresh checks,
 * and a think block in a cached answer is still removed on every hit.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";
import { headerValue, setHeader } from "../src/core/answer.ts";
import { normalizePath } from "../src/core/request_path.ts";
import { mayHoldThinkTag } from "../src/filter/think_answer.ts";
import { rememberedLately } from "../src/core/memo.ts";

const encoder = new TextEncoder();

Deno.test("header pairs: setHeader replaces every pair of the name, headerValue reads the first", () => {
  const pairs: [string, string][] = [["x-cache", "a"], ["content-type", "text/plain"], ["x-cache", "b"]];
  setHeader(pairs, "x-cache", "MISS");
  assertEquals(pairs, [["content-type", "text/plain"], ["x-cache", "MISS"]]);
  assertEquals(headerValue(pairs, "content-type"), "text/plain");
  assertEquals(headerValue(pairs, "age"), null);
});

Deno.test("remembered paths: a path is normalized the same every time, and a refused one is refused every time", () => {
  for (let round = 0; round < 3; round++) {
    assertEquals(normalizePath("/v1/%63hat/completions"), "/v1/chat/completions");
    assertThrows(() => normalizePath("/v1/../admin"));
    assertThrows(() => normalizePath("/v1/%2e%2e/admin"));
  }
  // More distinct paths than are remembered: the oldest are checked again, with the same results.
  for (let i = 0; i < 1000; i++) assertEquals(normalizePath(`/v1/models/m${i}`), `/v1/models/m${i}`);
  assertEquals(normalizePath("/v1/%63hat/completions"), "/v1/chat/completions");
  assertThrows(() => normalizePath("/v1/../admin"));
});

Deno.test("rememberedLately: computes a string's value once, keeps at most its limit, never keeps a throw", () => {
  const computed: string[] = [];
  const upper = rememberedLately(3, (key) => {
    computed.push(key);
    if (key === "bad") throw new Error("refused");
    return key.toUpperCase();
  });
  assertEquals([upper("a"), upper("a"), upper("b")], ["A", "A", "B"]);
  assertEquals(computed, ["a", "b"]);
  assertThrows(() => upper("bad"));
  assertThrows(() => upper("bad"));
  assertEquals(computed, ["a", "b", "bad", "bad"], "a throw is computed again");
  upper("c");
  upper("d"); // the fourth value: what was kept is forgotten
  upper("a");
  assertEquals(computed.slice(-3), ["c", "d", "a"]);
});

Deno.test("think-tag verdicts are kept per body and per settings", () => {
  const plain = encoder.encode('{"content":"no tags here"}');
  const tagged = encoder.encode('{"content":"<think>x</think>y"}');
  const think = { tags: ["think"], mode: "strip" as const };
  const other = { tags: ["reasoning"], mode: "strip" as const };
  for (let round = 0; round < 2; round++) {
    assertEquals(mayHoldThinkTag(plain, think), false);
    assertEquals(mayHoldThinkTag(tagged, think), true);
    assertEquals(mayHoldThinkTag(tagged, other), false, "another bridge's tags get their own verdict");
  }
});

Deno.test("the upstream's own X-Cache and Age never reach the client next to the bridge's", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  t.upstream.always({ headers: { "x-cache": "HIT from upstream-cdn", age: "999" } });
  const chat = { model: "m", messages: [{ role: "user", content: "whose headers" }] };
  const first = await t.post("/v1/chat/completions", chat);
  await first.body?.cancel();
  assertEquals(first.headers.get("x-cache"), "MISS", "one X-Cache, the bridge's");
  await t.cacheSettled();
  for (let i = 0; i < 3; i++) {
    const hit = await t.post("/v1/chat/completions", chat);
    await hit.body?.cancel();
    assert(hit.headers.get("x-cache")!.startsWith("HIT-"), hit.headers.get("x-cache")!);
    const age = Number(hit.headers.get("age"));
    assert(age >= 0 && age < 60, `Age ${hit.headers.get("age")} is the bridge's, not the upstream's`);
  }
  const passthrough = await t.post("/v1/models", {});
  await passthrough.body?.cancel();
  assertEquals(passthrough.headers.get("x-cache"), "BYPASS");
});

Deno.test("a cached answer with a think block is filtered on every hit, from memory as from disk", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  t.upstream.always({ reply: "<think>private reasoning</think>The answer." });
  const chat = { model: "m", messages: [{ role: "user", content: "think first" }] };
  const outcomes = new Set<string>();
  for (let i = 0; i < 5; i++) {
    const response = await t.post("/v1/chat/completions", chat);
    outcomes.add(response.headers.get("x-cache")!);
    const body = await response.json();
    assertEquals(body.choices[0].message.content, "The answer.");
    if (i === 0) await t.cacheSettled();
  }
  assert(outcomes.has("MISS") && [...outcomes].some((o) => o.startsWith("HIT-")), [...outcomes].join());
  assertEquals(t.upstream.calls, 1);
});
