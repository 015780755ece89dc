/**
 * Issue 18: fair share of the model server. `--max-inflight` caps requests at the upstream (streams hold their
 * slot until they end), others wait in a bounded FIFO queue (503 + Retry-After when it is full or the wait runs
 * out), a client that leaves the queue never reaches the upstream, tenants are served round-robin, and cache
 * hits never take a slot.
 */
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const chat = (content = "hi") => JSON.stringify({ model: "m", messages: [{ role: "user", content }] });
const ANSWER = '{"id":"x","object":"chat.completion","choices":[]}';

/** An upstream that takes `ms` per answer and records how many it was answering at once, and in what order. */
function slowUpstream(ms: number) {
  const state = { active: 0, peak: 0, order: [] as string[] };
  const upstream = new ScriptedUpstream(async (request) => {
    state.active++;
    state.peak = Math.max(state.peak, state.active);
    state.order.push(JSON.parse(request.body).messages[0].content);
    await new Promise((resolve) => setTimeout(resolve, ms));
    state.active--;
    return response(200, ANSWER);
  });
  return { upstream, state };
}

Deno.test("--max-inflight 2: the upstream never sees more than 2 at once while 20 clients wait", async () => {
  const { upstream, state } = slowUpstream(300);
  await using _ = upstream;
  await using t = await startTestBridge(["--max-inflight", "2"], { upstreamUrl: upstream.url });
  const answers = Array.from({ length: 20 }, (_, i) => t.post("/v1/chat/completions", chat(`q${i}`)));
  const during = await waitFor(async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const queued = Number(/bridge_queue_length (\d+)/.exec(text)?.[1]);
    return queued >= 10
      ? { inflight: Number(/bridge_upstream_inflight (\d+)/.exec(text)?.[1]), queued }
      : undefined;
  }, { interval: 20, message: "requests queued" });
  assertEquals(during.inflight, 2);
  for (const answer of answers) assertEquals((await answer).status, 200);
  assertEquals(state.peak, 2);
  assertEquals(upstream.count("POST"), 20);
  // FIFO: the upstream saw them in the order they came (the first two start together).
  assertEquals(state.order.slice(2), Array.from({ length: 18 }, (_, i) => `q${i + 2}`));
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_queue_wait_seconds_count 20/);
  assert(t.logs.some((line) => /queued_ms=[1-9]/.test(line)), "the wait is in the access log");
});

Deno.test("a wait past --queue-timeout, or a full queue, is a 503 with Retry-After in the API's shape", async () => {
  const { upstream } = slowUpstream(1500);
  await using _ = upstream;
  await using t = await startTestBridge([
    "--max-inflight",
    "1",
    "--queue-size",
    "1",
    "--queue-timeout",
    "300",
  ], {
    upstreamUrl: upstream.url,
  });
  const first = t.post("/v1/chat/completions", chat("first"));
  await waitFor(() => upstream.received.length === 1, { message: "the first request reached the upstream" });
  const waiting = t.post("/api/chat", chat("second")); // waits, then times out
  await new Promise((resolve) => setTimeout(resolve, 50));
  const full = await t.post("/v1/chat/completions", chat("third")); // the queue (size 1) is full
  assertEquals(full.status, 503);
  assert(Number(full.headers.get("retry-after")) >= 1);
  assertEquals((await full.json()).error.code, "queue_full");
  const timedOut = await waiting;
  assertEquals(timedOut.status, 503);
  assert(Number(timedOut.headers.get("retry-after")) >= 1);
  assertMatch((await timedOut.json()).error, /--queue-timeout/); // Ollama's shape on /api
  assertEquals((await first).status, 200);
  assertEquals(upstream.count("POST"), 1);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_queue_rejections_total\{reason="queue_full",tenant=""\} 1/);
  assertMatch(metrics, /bridge_queue_rejections_total\{reason="queue_timeout",tenant=""\} 1/);
});

Deno.test("a client that aborts while queued leaves at once and never reaches the upstream", async () => {
  const { upstream } = slowUpstream(800);
  await using _ = upstream;
  await using t = await startTestBridge(["--max-inflight", "1"], { upstreamUrl: upstream.url });
  const first = t.post("/v1/chat/completions", chat("first"));
  await waitFor(() => upstream.received.length === 1);
  const controller = new AbortController();
  const leaving = fetch(`${t.url}/v1/chat/completions`, {
    method: "POST",
    body: chat("leaving"),
    signal: controller.signal,
  })
    .catch(() => "aborted");
  await waitFor(async () => /bridge_queue_length 1/.test(await (await fetch(`${t.url}/metrics`)).text()));
  controller.abort();
  assertEquals(await leaving, "aborted");
  await waitFor(async () => /bridge_queue_length 0/.test(await (await fetch(`${t.url}/metrics`)).text()), {
    message: "the departed client left the queue",
  });
  assertEquals((await first).status, 200);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assertEquals(upstream.received.map((request) => JSON.parse(request.body).messages[0].content), ["first"]);
});

Deno.test("streams hold their slot until they end; cache hits and coalesced requests take none", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--max-inflight", "1", "--enable-cache", "--cache-dir", dir.path], {
    upstream: { chunkDelayMs: 150, chunkSize: 8 },
  });
  const stored = await t.post("/v1/chat/completions", chat("stored"));
  await stored.body?.cancel();
  await t.cacheSettled();
  const stream = await t.post(
    "/v1/chat/completions",
    JSON.stringify({ ...JSON.parse(chat("long")), stream: true }),
  );
  const reader = stream.body!.getReader();
  await reader.read();
  let text = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(text, /bridge_upstream_inflight 1/);
  // While the stream holds the only slot: a hit is answered at once, a coalesced request joins.
  const hit = await t.post("/v1/chat/completions", chat("stored"));
  assertEquals(hit.headers.get("x-cache"), "HIT-DISK");
  await hit.body?.cancel();
  const joined = await t.post(
    "/v1/chat/completions",
    JSON.stringify({ ...JSON.parse(chat("long")), stream: true }),
  );
  assertEquals(joined.headers.get("x-cache"), "COALESCED");
  await joined.body?.cancel();
  while (!(await reader.read()).done) { /* to the end */ }
  await waitFor(
    async () => /bridge_upstream_inflight 0/.test(text = await (await fetch(`${t.url}/metrics`)).text()),
    {
      message: "the slot was released when the stream ended",
    },
  );
  assertMatch(text, /bridge_queue_wait_seconds_count 2/, "only the two real upstream calls took a slot");
});

Deno.test("two tenants: one sends 30, the other 1; the single request is served before the burst drains", async () => {
  const { upstream, state } = slowUpstream(100);
  await using _ = upstream;
  await using t = await startTestBridge([
    "--max-inflight",
    "1",
    "--enable-shared-mode",
    "--api-key",
    "sk-up",
    "--access-key",
    "burst:ak-burst",
    "--access-key",
    "single:ak-single",
  ], { upstreamUrl: upstream.url });
  const burst = Array.from(
    { length: 30 },
    (_, i) => t.post("/v1/chat/completions", chat(`burst${i}`), { authorization: "Bearer ak-burst" }),
  );
  await waitFor(() => upstream.received.length >= 1);
  const single = t.post("/v1/chat/completions", chat("single"), { authorization: "Bearer ak-single" });
  assertEquals((await single).status, 200);
  const position = state.order.indexOf("single");
  assert(position >= 1 && position <= 3, `the single request went upstream as number ${position + 1} of 31`);
  for (const answer of burst) assertEquals((await answer).status, 200);
});

Deno.test("per-tenant limits from the access key: rps= refuses with 429, inflight= caps that tenant alone", async () => {
  const { upstream, state } = slowUpstream(300);
  await using _ = upstream;
  await using t = await startTestBridge([
    "--enable-shared-mode",
    "--api-key",
    "sk-up",
    "--access-key",
    "capped:ak-capped:inflight=1,rps=100",
    "--access-key",
    "slow:ak-slow:rps=1",
    "--access-key",
    "free:ak-free",
  ], { upstreamUrl: upstream.url });
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  await (await t.post("/v1/chat/completions", chat("s1"), as("ak-slow"))).body?.cancel();
  const refused = await t.post("/v1/chat/completions", chat("s2"), as("ak-slow"));
  assertEquals(refused.status, 429);
  assert(Number(refused.headers.get("retry-after")) >= 1);
  assertEquals((await refused.json()).error.code, "tenant_limit_exceeded");
  state.peak = 0;
  const capped = Array.from(
    { length: 3 },
    (_, i) => t.post("/v1/chat/completions", chat(`c${i}`), as("ak-capped")),
  );
  const free = Array.from(
    { length: 3 },
    (_, i) => t.post("/v1/chat/completions", chat(`f${i}`), as("ak-free")),
  );
  for (const answer of [...capped, ...free]) assertEquals((await answer).status, 200);
  // The capped tenant's three went one at a time; the free tenant's ran beside them.
  assert(state.peak >= 2 && state.peak <= 4, `peak ${state.peak}`);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_queue_rejections_total\{reason="tenant_rate",tenant="slow"\} 1/);
});
