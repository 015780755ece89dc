/** The cache through the real server: hits, misses, coalescing, what is never stored, restarts. */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { sseData, startTestBridge, tempCacheDir } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const chat = (content = "hi", extra: Record<string, unknown> = {}) => ({
  model: "deepseek-r1:7b",
  temperature: 0.2,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content }],
  ...extra,
});

async function cached(dir: string, ...flags: string[]) {
  return await startTestBridge(["--enable-cache", "--cache-dir", dir, ...flags]);
}

Deno.test("the same request twice: one upstream call, the same answer, X-Cache and Age", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.plan({ reply: "first answer" });
  const first = await t.post("/v1/chat/completions", chat());
  assertEquals(first.headers.get("x-cache"), "MISS");
  const firstBody = await first.json();
  await t.cacheSettled();
  const second = await t.post("/v1/chat/completions", chat());
  assertEquals(second.headers.get("x-cache"), "HIT-DISK");
  assertEquals(second.headers.get("age"), "0");
  assertEquals(await second.json(), firstBody);
  assertEquals(firstBody.choices[0].message.content, "first answer");
  assertEquals(t.upstream.calls, 1);
});

Deno.test("streams are cached and replayed as streams: SSE and NDJSON", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  const sse = async () => await (await t.post("/v1/chat/completions", chat("s", { stream: true }))).text();
  const first = await sse();
  await t.cacheSettled();
  const second = await sse();
  assertEquals(second, first);
  assert(second.endsWith("data: [DONE]\n\n"));
  const ndjson = async () => {
    const response = await t.post("/api/chat", chat("n"));
    return {
      cache: response.headers.get("x-cache"),
      type: response.headers.get("content-type"),
      text: await response.text(),
    };
  };
  const a = await ndjson();
  await t.cacheSettled();
  const b = await ndjson();
  assertEquals([a.cache, b.cache], ["MISS", "HIT-DISK"]);
  assertEquals(b.type, "application/x-ndjson");
  assertEquals(b.text, a.text);
  assertEquals(t.upstream.calls, 2);
});

Deno.test("a different earlier turn, sampling parameter, stream flag or endpoint is a miss", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  const base = chat();
  const variants = [
    base,
    { ...base, temperature: 0.3 },
    { ...base, messages: [{ role: "system", content: "Be verbose." }, base.messages[1]] },
    { ...base, model: "qwen3" },
    { ...base, stream: true },
  ];
  for (const body of variants) await (await t.post("/v1/chat/completions", body)).text();
  await (await t.post("/v1/completions", { model: "m", prompt: "hi" })).text();
  await t.cacheSettled();
  assertEquals(t.upstream.calls, 6);
  // Key order and fields that do not change the answer do not matter.
  const reordered = { messages: base.messages, temperature: 0.2, model: base.model, user: "alice" };
  const hit = await t.post("/v1/chat/completions", reordered);
  assertEquals(hit.headers.get("x-cache"), "HIT-DISK");
  await hit.body?.cancel();
  assertEquals(t.upstream.calls, 6);
});

Deno.test("a restart with the same --cache-dir still hits", async () => {
  await using dir = await tempCacheDir();
  const upstream = new FakeUpstream();
  try {
    {
      await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
        sharedUpstream: upstream,
      });
      await (await t.post("/v1/chat/completions", chat())).text();
      await t.cacheSettled();
    }
    await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
      sharedUpstream: upstream,
    });
    const response = await t.post("/v1/chat/completions", chat());
    assertEquals(response.headers.get("x-cache"), "HIT-DISK");
    await response.text();
    assertEquals(upstream.calls, 1);
  } finally {
    await upstream.close();
  }
});

Deno.test("answers of 1 MiB round-trip through the disk tier (split into parts)", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  const big = "0123456789abcdef".repeat(64 * 1024);
  t.upstream.always({ reply: big });
  const first = await (await t.post("/v1/chat/completions", chat())).json();
  await t.cacheSettled();
  const second = await t.post("/v1/chat/completions", chat());
  assertEquals(second.headers.get("x-cache"), "HIT-DISK");
  const body = await second.json();
  assertEquals(body.choices[0].message.content.length, big.length);
  assertEquals(body, first);
  const stream = async () => await (await t.post("/v1/chat/completions", chat("x", { stream: true }))).text();
  const streamed = await stream();
  await t.cacheSettled();
  assertEquals(await stream(), streamed);
  assertEquals(t.upstream.calls, 2);
});

Deno.test("a cut stream and a 5xx are never stored", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.plan({ cutAfterChunks: 2 });
  assertMatch(
    await (await t.post("/v1/chat/completions", chat("c", { stream: true }))).text(),
    /event: error/,
  );
  const full = await t.post("/v1/chat/completions", chat("c", { stream: true }));
  assertEquals(full.headers.get("x-cache"), "MISS");
  assert((await full.text()).endsWith("[DONE]\n\n"));
  t.upstream.plan({ status: 500 });
  const failed = await t.post("/v1/chat/completions", chat("e"));
  assertEquals(failed.status, 500);
  await failed.body?.cancel();
  const retried = await t.post("/v1/chat/completions", chat("e"));
  assertEquals([retried.status, retried.headers.get("x-cache")], [200, "MISS"]);
  await retried.body?.cancel();
  assertEquals(t.upstream.calls, 4);
});

Deno.test("a stream whose last message is JSON but no object (null, a number) is not stored; the bridge keeps serving", async () => {
  const bodies: Record<string, { type: string; body: string }> = {
    "POST /api/chat": {
      type: "application/x-ndjson",
      body: '{"message":{"content":"a"},"done":false}\nnull\n',
    },
    "POST /v1/chat/completions": {
      type: "text/event-stream",
      body: 'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: 42\n\n',
    },
  };
  await using upstream = new ScriptedUpstream((request) => {
    const { type, body } = bodies[request.line.split(" ").slice(0, 2).join(" ")];
    return response(200, body, { "content-type": type });
  });
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
    upstreamUrl: upstream.url,
  });
  for (
    const [path, body] of [["/api/chat", chat("n")], ["/v1/chat/completions", chat("s", { stream: true })]]
  ) {
    for (let round = 0; round < 2; round++) {
      const answer = await t.post(path as string, body);
      assertEquals([answer.status, answer.headers.get("x-cache")], [200, "MISS"], `${path} round ${round}`);
      await answer.text();
      await t.cacheSettled();
    }
  }
  assertEquals([upstream.count("POST /api/chat"), upstream.count("POST /v1/chat/completions")], [2, 2]);
});

Deno.test("Cache-Control: no-cache refreshes the entry; no-store keeps the answer out", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.plan({ reply: "old" }, { reply: "new" });
  const content = async (headers?: HeadersInit) => {
    const response = await t.post("/v1/chat/completions", chat(), headers);
    return [(await response.json()).choices[0].message.content, response.headers.get("x-cache")];
  };
  assertEquals(await content(), ["old", "MISS"]);
  await t.cacheSettled();
  assertEquals(await content({ "cache-control": "no-cache" }), ["new", "MISS"]);
  // Right after the refresh its answer may still be on its way to the store: then it is served from the
  // finished flight's memory (a hit, not COALESCED: that flight is over). Never the old one.
  const [refreshed, how] = await content();
  assertEquals(refreshed, "new");
  assert(how === "HIT-DISK" || how === "HIT-MEMORY", String(how));
  t.upstream.plan({ reply: "private" });
  const response = await t.post("/v1/chat/completions", chat("secret"), { "cache-control": "no-store" });
  await response.text();
  const after = await t.post("/v1/chat/completions", chat("secret"));
  assertEquals(after.headers.get("x-cache"), "MISS");
  await after.text();
});

Deno.test("8 concurrent identical requests: one upstream call; stream joiners get every event", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.always({ chunkDelayMs: 40 });
  const started = [t.post("/v1/chat/completions", chat("c", { stream: true }))];
  await new Promise((resolve) => setTimeout(resolve, 100)); // the first is mid-stream when the others join
  for (let i = 0; i < 7; i++) started.push(t.post("/v1/chat/completions", chat("c", { stream: true })));
  const responses = await Promise.all(started);
  const texts = await Promise.all(responses.map((response) => response.text()));
  assertEquals(t.upstream.calls, 1);
  assertEquals(responses.map((r) => r.headers.get("x-cache")).sort(), [
    "COALESCED",
    "COALESCED",
    "COALESCED",
    "COALESCED",
    "COALESCED",
    "COALESCED",
    "COALESCED",
    "MISS",
  ]);
  for (const text of texts) assertEquals(text, texts[0]);
  assertEquals(sseData(texts[0]).length, 5);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_coalesced_requests_total 7/);
});

Deno.test("when the leader's upstream call fails, every waiter gets the error; none hangs", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.plan({ delayMs: 150, status: 503, body: '{"error":"overloaded"}' });
  const responses = await Promise.all(
    Array.from({ length: 4 }, () => t.post("/v1/chat/completions", chat())),
  );
  assertEquals(responses.map((response) => response.status), [503, 503, 503, 503]);
  for (const response of responses) assertEquals(await response.json(), { error: "overloaded" });
  assertEquals(t.upstream.calls, 1);
  t.upstream.plan({ cutAfterChunks: 1, chunkDelayMs: 100 });
  const streams = await Promise.all(
    Array.from({ length: 3 }, () => t.post("/v1/chat/completions", chat("s", { stream: true }))),
  );
  for (const stream of streams) assertMatch(await stream.text(), /event: error/);
});

Deno.test("a leader that disconnects does not cut off the requests that joined it", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  t.upstream.always({ chunkDelayMs: 60 });
  const controller = new AbortController();
  const leader = await fetch(`${t.url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify(chat("l", { stream: true })),
    signal: controller.signal,
  });
  // The joiner has joined once its headers arrived; only then does the leader leave.
  const joiner = await t.post("/v1/chat/completions", chat("l", { stream: true }));
  assertEquals(joiner.headers.get("x-cache"), "COALESCED");
  await leader.body!.getReader().read();
  controller.abort();
  const text = await joiner.text();
  assert(text.endsWith("data: [DONE]\n\n"));
  assertEquals(t.upstream.calls, 1);
});

Deno.test("the raw answer is stored: the think filter applies on hits, and turning it off never serves a filtered one", async () => {
  await using dir = await tempCacheDir();
  const upstream = new FakeUpstream({ reply: "<think>plan</think>Answer." });
  try {
    {
      await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
        sharedUpstream: upstream,
      });
      assertEquals(
        (await (await t.post("/v1/chat/completions", chat())).json()).choices[0].message.content,
        "Answer.",
      );
      await t.cacheSettled();
      const hit = await t.post("/v1/chat/completions", chat());
      assertEquals(hit.headers.get("x-cache"), "HIT-DISK");
      assertEquals((await hit.json()).choices[0].message.content, "Answer.");
    }
    await using t = await startTestBridge([
      "--enable-cache",
      "--cache-dir",
      dir.path,
      "--disable-think-filter",
    ], {
      sharedUpstream: upstream,
    });
    const raw = await t.post("/v1/chat/completions", chat());
    assertEquals(raw.headers.get("x-cache"), "HIT-DISK");
    assertEquals((await raw.json()).choices[0].message.content, "<think>plan</think>Answer.");
    assertEquals(upstream.calls, 1);
  } finally {
    await upstream.close();
  }
});

Deno.test("non-cacheable requests bypass the cache; cache hits are never rate limited", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path, "--rate-limit", "1");
  const models = await fetch(`${t.url}/v1/models`);
  assertEquals(models.headers.get("x-cache"), "BYPASS");
  await models.body?.cancel();
  await new Promise((resolve) => setTimeout(resolve, 1100)); // a fresh token for the miss
  await (await t.post("/v1/chat/completions", chat())).text();
  await t.cacheSettled();
  for (let i = 0; i < 5; i++) {
    const hit = await t.post("/v1/chat/completions", chat());
    assertEquals(hit.status, 200);
    await hit.body?.cancel();
  }
  assertEquals(t.upstream.calls, 2);
});

Deno.test("cache metrics: results, entries, saved tokens, hot threshold", async () => {
  await using dir = await tempCacheDir();
  await using t = await cached(dir.path);
  await (await t.post("/v1/chat/completions", chat())).text();
  await t.cacheSettled();
  await (await t.post("/v1/chat/completions", chat())).text();
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_cache_requests_total\{result="MISS"\} 1/);
  assertMatch(metrics, /bridge_cache_requests_total\{result="HIT-DISK"\} 1/);
  assertMatch(metrics, /bridge_cache_entries\{tier="disk"\} 1/);
  assertMatch(metrics, /bridge_cache_saved_tokens_total 12/);
  assertMatch(metrics, /bridge_cache_hot_threshold 12/);
  assertMatch(metrics, /bridge_cache_bytes\{tier="disk"\} [1-9]/);
});
