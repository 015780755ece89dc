/** End-to-end: what a client of the bridge sees, against the fake upstream. */
import { assert, assertEquals, assertGreater, assertMatch, waitFor } from "./assert.ts";
import { readTimed, sseData, startTestBridge } from "./harness.ts";

Deno.test("non-stream chat completion passes through unchanged", async () => {
  await using t = await startTestBridge();
  const response = await t.post("/v1/chat/completions", {
    model: "m",
    messages: [{ role: "user", content: "hi" }],
  });
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(body.choices[0].message.content, "Hello from the fake upstream.");
  assertEquals(t.upstream.received[0].path, "/v1/chat/completions");
  assertEquals(JSON.parse(t.upstream.received[0].body).messages[0].content, "hi");
});

Deno.test("SSE stream arrives chunk by chunk, unbuffered, with streaming headers", async () => {
  await using t = await startTestBridge([], { upstream: { chunkDelayMs: 150, chunkSize: 10 } });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", { model: "m", stream: true, messages: [] });
  assertEquals(response.headers.get("content-type"), "text/event-stream");
  assertEquals(response.headers.get("cache-control"), "no-cache");
  assertEquals(response.headers.get("x-accel-buffering"), "no");
  const chunks = await readTimed(response, start);
  const text = chunks.map((chunk) => chunk.text).join("");
  const content = sseData(text).map((event) =>
    (event.choices as { delta: { content?: string } }[])[0].delta.content ?? ""
  )
    .join("");
  assertEquals(content, "Hello from the fake upstream.");
  assert(text.endsWith("data: [DONE]\n\n"));
  // 3 content chunks + final: the upstream takes >= 450 ms; the first chunk must not wait for the last.
  assertGreater(chunks.length, 2);
  assertGreater(chunks.at(-1)!.at - chunks[0].at, 300, "first chunk arrived long before the last");
  assert(chunks[0].at < 120, `first chunk after ${chunks[0].at.toFixed(0)} ms`);
});

Deno.test("Ollama NDJSON stream arrives line by line", async () => {
  await using t = await startTestBridge([], { upstream: { chunkDelayMs: 100 } });
  const start = performance.now();
  const response = await t.post("/api/chat", { model: "m", messages: [] });
  assertEquals(response.headers.get("content-type"), "application/x-ndjson");
  const chunks = await readTimed(response, start);
  const lines = chunks.map((c) => c.text).join("").trim().split("\n").map((line) => JSON.parse(line));
  assertEquals(lines.map((line) => line.message.content).join(""), "Hello from the fake upstream.");
  assertEquals(lines.at(-1).done, true);
  assertGreater(chunks.at(-1)!.at - chunks[0].at, 200);
});

Deno.test("client disconnect cancels the upstream stream", async () => {
  await using t = await startTestBridge([], { upstream: { chunkDelayMs: 100, chunkSize: 2 } });
  const controller = new AbortController();
  const response = await fetch(`${t.url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "m", stream: true, messages: [] }),
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  await reader.read();
  controller.abort();
  await reader.cancel().catch(() => {});
  const ends = await t.upstream.waitForStreamEnds(1);
  assertEquals(ends, ["cancelled"]);
});

Deno.test("client disconnect while waiting for headers aborts the upstream request", async () => {
  await using t = await startTestBridge([], { upstream: { chunkDelayMs: 0 } });
  t.upstream.plan({ delayMs: 3000 });
  const controller = new AbortController();
  const pending = fetch(`${t.url}/v1/models`, { signal: controller.signal }).catch((error) => error);
  await waitFor(() => t.upstream.calls > 0, { message: "the request reached the upstream" });
  controller.abort();
  assert((await pending) instanceof Error);
  // The fake's own handler sees its request aborted as soon as the bridge closes the connection.
  await t.upstream.waitForAborts(1, 1500);
});

Deno.test("unreachable upstream answers 502 in OpenAI's error shape", async () => {
  await using t = await startTestBridge([], { upstreamUrl: "http://127.0.0.1:9" });
  const response = await t.post("/v1/chat/completions", { model: "m", messages: [] });
  assertEquals(response.status, 502);
  const body = await response.json();
  assertEquals(body.error.type, "upstream_error");
  assertEquals(body.error.code, "upstream_unreachable");
  assertMatch(body.error.message, /^Upstream is unreachable: /);
});

Deno.test("an upstream slower than --timeout answers 504", async () => {
  await using t = await startTestBridge(["--timeout", "1000"]);
  t.upstream.plan({ delayMs: 10_000 });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", { model: "m", messages: [] });
  const elapsed = performance.now() - start;
  assertEquals(response.status, 504);
  assertEquals((await response.json()).error.code, "upstream_timeout");
  // Not before the timeout, and well before the upstream's answer (a generous bound on a shared machine).
  assert(elapsed >= 1000 && elapsed < 5000, `answered after ${elapsed.toFixed(0)} ms`);
});

Deno.test("malformed JSON on a JSON endpoint answers 400 without calling the upstream", async () => {
  await using t = await startTestBridge();
  for (const body of ["{not json", "[1,2]", ""]) {
    const response = await t.post("/v1/chat/completions", body);
    assertEquals(response.status, 400, `body ${JSON.stringify(body)}`);
    const error = (await response.json()).error;
    assertEquals(error.type, "invalid_request_error");
    assertEquals(error.code, "invalid_json");
  }
  // curl -d sends form content-type; Ollama's endpoints are JSON whatever the header says.
  const form = await fetch(`${t.url}/api/generate`, { method: "POST", body: "{oops" });
  assertEquals(form.status, 400);
  await form.body?.cancel();
  assertEquals(t.upstream.calls, 0);
});

Deno.test("unknown own route answers 404 in OpenAI's error shape", async () => {
  await using t = await startTestBridge();
  const response = await fetch(`${t.url}/nope`);
  assertEquals(response.status, 404);
  const body = await response.json();
  assertEquals(body.error.code, "not_found");
  assertEquals(typeof body.error.message, "string");
  assertEquals(t.upstream.calls, 0);
});

Deno.test("upstream errors pass through with their own status and body", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ status: 404, body: '{"error":"model \\"nope\\" not found, try pulling it first"}' });
  const response = await t.post("/api/chat", { model: "nope", messages: [] });
  assertEquals(response.status, 404);
  assertEquals(await response.text(), '{"error":"model \\"nope\\" not found, try pulling it first"}');
});

Deno.test("headers: end-to-end ones cross, hop-by-hop ones and host do not", async () => {
  await using t = await startTestBridge();
  const response = await fetch(`${t.url}/v1/echo?x=1&y=two`, {
    method: "POST",
    headers: {
      authorization: "Bearer client-key",
      "x-custom": "kept",
      connection: "keep-alive, x-hop",
      "x-hop": "dropped",
      "keep-alive": "timeout=5",
      "content-type": "text/plain",
    },
    body: "raw body, not JSON",
  });
  assertEquals(response.status, 200);
  const echo = await response.json();
  assertEquals(echo.path, "/v1/echo");
  assertEquals(echo.search, "?x=1&y=two");
  assertEquals(echo.body, "raw body, not JSON");
  assertEquals(echo.headers.authorization, "Bearer client-key");
  assertEquals(echo.headers["x-custom"], "kept");
  assertEquals(echo.headers["x-hop"], undefined);
  assertEquals(echo.headers["keep-alive"], undefined);
  assertEquals(echo.headers.host, new URL(t.upstream.url).host);
});

Deno.test("a base URL ending in /v1 does not produce /v1/v1", async () => {
  const upstream = await startTestBridge();
  await using t = await startTestBridge([], { upstreamUrl: `${upstream.upstream.url}/v1` });
  const response = await t.post("/v1/chat/completions", { model: "m", messages: [] });
  assertEquals(response.status, 200);
  await response.body?.cancel();
  await upstream[Symbol.asyncDispose]();
  assertEquals(t.upstream.calls, 0);
  assertEquals(upstream.upstream.received[0].path, "/v1/chat/completions");
});

Deno.test("a stream cut by the upstream ends with an SSE error event, not a silent close", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ cutAfterChunks: 2 });
  const response = await t.post("/v1/chat/completions", { model: "m", stream: true, messages: [] });
  assertEquals(response.status, 200);
  const text = await response.text();
  assert(!text.includes("[DONE]"));
  assertMatch(
    text,
    /event: error\ndata: \{"error":\{"message":"Upstream is unreachable: [^"]*","type":"upstream_error"/,
  );
});

Deno.test("an NDJSON stream cut by the upstream ends with an error line", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ cutAfterChunks: 1 });
  const response = await t.post("/api/generate", { model: "m" });
  const lines = (await response.text()).trim().split("\n").map((line) => JSON.parse(line));
  assertEquals(lines[0].response, "Hello fr");
  assertEquals(lines.at(-1).done, true);
  assertMatch(lines.at(-1).error, /^Upstream is unreachable/);
});

Deno.test("gzip from the upstream reaches the client decoded and correctly framed", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ gzip: true });
  const response = await fetch(`${t.url}/v1/models`);
  assertEquals(response.headers.get("content-encoding"), null);
  assertEquals((await response.json()).data[0].id, "fake-model");
});

Deno.test("/health, /ready and /metrics", async () => {
  await using t = await startTestBridge();
  const health = await fetch(`${t.url}/health`);
  assertEquals(await health.json(), { status: "ok" });
  const ready = await fetch(`${t.url}/ready`);
  assertEquals(ready.status, 200);
  await ready.body?.cancel();
  await (await t.post("/v1/chat/completions", { model: "m", stream: true, messages: [] })).text();
  await (await fetch(`${t.url}/v1/models`)).text();
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(
    metrics,
    /bridge_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} 1/,
  );
  assertMatch(metrics, /bridge_http_request_duration_seconds_count\{route="\/v1\/models"\} 1/);
  assertMatch(metrics, /bridge_upstream_duration_seconds_count\{route="\/v1\/models",status="200"\} 1/);
  assertMatch(metrics, /bridge_stream_first_byte_seconds_count\{route="\/v1\/chat\/completions"\} 1/);
  assertMatch(metrics, /bridge_http_requests_in_flight 1/); // the /metrics request itself
  assertMatch(metrics, /bridge_memory_bytes\{kind="rss"\} [1-9]/);
  assertMatch(metrics, /ollama_request_errors_total 0/);
});

Deno.test("one log line per request, with status, duration, bytes and upstream status", async () => {
  await using t = await startTestBridge();
  await (await t.post("/v1/chat/completions", { model: "m", messages: [] }, {
    authorization: "Bearer sk-secret-1234",
  }))
    .text();
  await (await t.post("/v1/chat/completions", { model: "m", stream: true, messages: [] })).text();
  const lines = t.logs.filter((line) => line.includes("POST /v1/chat/completions"));
  assertEquals(lines.length, 2);
  assertMatch(lines[0], /status=200 ms=[\d.]+ bytes=\d+ upstream=200/);
  assertMatch(lines[1], /status=200 ms=[\d.]+ bytes=\d+ upstream=200 stream=complete/);
});

Deno.test("secrets never reach the log: query-string keys are masked, control characters escaped", async () => {
  await using t = await startTestBridge([], { upstreamUrl: "http://127.0.0.1:9" });
  // The upstream is down, so the bridge logs a warning with the URL it tried, query string included.
  const response = await fetch(`${t.url}/v1/models?api_key=sk-secret-1234&token=tok-secret-5678&x=1`, {
    headers: { authorization: "Bearer sk-secret-1234" },
  });
  assertEquals(response.status, 502);
  await response.body?.cancel();
  const text = t.logs.join("\n");
  assertMatch(text, /upstream unreachable/);
  assertMatch(text, /api_key=\*\*\*&token=\*\*\*&x=1/);
  assert(!text.includes("sk-secret-1234") && !text.includes("tok-secret-5678"), text);
  const forged = await fetch(`${t.url}/v1/models%0a2026-01-01T00:00:00.000Z%20INFO%20forged`);
  await forged.body?.cancel();
  assert(t.logs.some((line) => line.includes("forged")));
  for (const line of t.logs) {
    assert(!line.startsWith("2026-01-01T00:00:00.000Z"), `a forged log line: ${line}`);
  }
});

Deno.test("--debug logs headers with secrets masked; --log-format json writes JSON lines", async () => {
  await using t = await startTestBridge(["--debug", "--log-format", "json"]);
  await (await t.post("/v1/models", {}, { authorization: "Bearer sk-secret-1234", "x-api-key": "k-999999" }))
    .text();
  const line = t.logs.map((text) => JSON.parse(text)).find((entry) => entry.msg === "POST /v1/models");
  assertEquals(line.request_headers.authorization, "***");
  assertEquals(line.request_headers["x-api-key"], "***");
  assertEquals(line.status, 404);
  assert(!t.logs.join("\n").includes("sk-secret-1234"));
});
