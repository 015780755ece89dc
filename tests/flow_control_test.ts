/** Retries, Retry-After, the rate limit, input limits and SSE keep-alive, through the real server. */
import { assert, assertEquals, assertGreater, assertMatch } from "./assert.ts";
import { rawHttp, startTestBridge } from "./harness.ts";

const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };
const fast = ["--retry-min-interval", "50", "--retry-max-interval", "100"];

Deno.test("503 twice, then success: the client sees the success after 3 upstream calls", async () => {
  await using t = await startTestBridge(["--retry-attempts", "2", ...fast]);
  t.upstream.plan({ status: 503 }, { status: 503 });
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 200);
  assertEquals((await response.json()).choices[0].message.content, "Hello from the fake upstream.");
  assertEquals(t.upstream.calls, 3);
  // The request body is replayed exactly.
  assertEquals(new Set(t.upstream.received.map((r) => r.body)).size, 1);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /ollama_request_retry_attempts_total 2/);
  assertMatch(metrics, /bridge_upstream_retries_total\{reason="status_503"\} 2/);
});

Deno.test("retries exhausted: the last upstream answer reaches the client as it is", async () => {
  await using t = await startTestBridge(["--retry-attempts", "1", ...fast]);
  t.upstream.plan({ status: 500, body: '{"error":"first"}' }, { status: 502, body: '{"error":"second"}' });
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 502);
  assertEquals(await response.json(), { error: "second" });
  assertEquals(t.upstream.calls, 2);
});

Deno.test("without --retry-attempts nothing is retried, and 4xx are never retried", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ status: 503 });
  assertEquals((await t.post("/v1/chat/completions", chat)).status, 503);
  await using r = await startTestBridge(["--retry-attempts", "3", ...fast]);
  r.upstream.plan({ status: 400 });
  const response = await r.post("/v1/chat/completions", chat);
  assertEquals(response.status, 400);
  await response.body?.cancel();
  assertEquals(r.upstream.calls, 1);
});

Deno.test("connection refused is retried with backoff, then 502", async () => {
  await using t = await startTestBridge(["--retry-attempts", "2", ...fast], {
    upstreamUrl: "http://127.0.0.1:9",
  });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 502);
  await response.body?.cancel();
  assert(performance.now() - start >= 100, "two backoff waits of at least 50 ms each");
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_upstream_retries_total\{reason="network_error"\} 2/);
});

Deno.test("429 with Retry-After: 1 waits at least a second, even above --retry-max-interval", async () => {
  await using t = await startTestBridge(["--retry-attempts", "1", ...fast]);
  t.upstream.plan({ status: 429, headers: { "retry-after": "1" } });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", chat);
  const elapsed = performance.now() - start;
  assertEquals(response.status, 200);
  await response.body?.cancel();
  assert(elapsed >= 1000, `retried after ${elapsed.toFixed(0)} ms`);
  assertEquals(t.upstream.calls, 2);
});

Deno.test("Retry-After as an HTTP-date is honoured (Portkey reads only numbers)", async () => {
  await using t = await startTestBridge(["--retry-attempts", "1", ...fast]);
  const at = new Date(Date.now() + 2000);
  at.setMilliseconds(0); // HTTP-dates have whole seconds
  t.upstream.plan({ status: 503, headers: { "retry-after": at.toUTCString() } });
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 200);
  await response.body?.cancel();
  assert(Date.now() >= at.getTime() - 5, `retried ${at.getTime() - Date.now()} ms before the date`);
});

Deno.test("a later Retry-After is honoured too, not only the first (LiteLLM's bug)", async () => {
  await using t = await startTestBridge(["--retry-attempts", "2", ...fast]);
  t.upstream.plan({ status: 429, headers: { "retry-after": "0.2" } }, {
    status: 429,
    headers: { "retry-after": "1" },
  });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", chat);
  const elapsed = performance.now() - start;
  assertEquals(response.status, 200);
  await response.body?.cancel();
  assert(elapsed >= 1200, `second wait honoured: ${elapsed.toFixed(0)} ms in all`);
  assertEquals(t.upstream.calls, 3);
});

Deno.test("a Retry-After beyond --timeout is not waited for: the 429 goes to the client", async () => {
  await using t = await startTestBridge(["--retry-attempts", "3", "--timeout", "2000", ...fast]);
  t.upstream.plan({ status: 429, headers: { "retry-after": "60" } });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 429);
  assertEquals(response.headers.get("retry-after"), "60");
  await response.body?.cancel();
  // The behaviour: the minute is not waited for (a generous bound, far below it, for a noisy machine).
  assert(performance.now() - start < 10_000);
  assertEquals(t.upstream.calls, 1);
});

Deno.test("no retry once the stream started: a cut stream ends with an error event", async () => {
  await using t = await startTestBridge(["--retry-attempts", "3", ...fast]);
  t.upstream.plan({ cutAfterChunks: 2 });
  const response = await t.post("/v1/chat/completions", { ...chat, stream: true });
  assertEquals(response.status, 200);
  assertMatch(await response.text(), /event: error/);
  assertEquals(t.upstream.calls, 1);
});

Deno.test("--rate-limit 5: 20 concurrent requests, the upstream never sees more than 5 + 5/s", async () => {
  await using t = await startTestBridge(["--rate-limit", "5"]);
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: 20 }, () => t.post("/v1/chat/completions", chat)));
  const elapsed = (performance.now() - start) / 1000;
  const refused = answers.filter((response) => response.status === 429);
  assertEquals(answers.length - refused.length, t.upstream.calls);
  assert(t.upstream.calls <= 5 + 5 * elapsed, `${t.upstream.calls} calls in ${elapsed.toFixed(2)} s`);
  assertGreater(refused.length, 0);
  for (const response of refused) {
    assert(Number(response.headers.get("retry-after")) >= 1, "Retry-After in whole seconds, at least 1");
    const body = await response.json();
    assertEquals(body.error.code, "rate_limit_exceeded");
    assertMatch(body.error.message, /retry after \d+ ms/);
  }
  for (const response of answers) if (response.status !== 429) await response.body?.cancel();
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, new RegExp(`bridge_rate_limited_total ${refused.length}\\b`));
  // Own endpoints are never limited.
  assertEquals((await fetch(`${t.url}/health`)).status, 200);
});

Deno.test("a 64 MiB body gets 413 at once, and the next request still works", async () => {
  await using t = await startTestBridge();
  // The refusal comes from the declared length, before the body: the client has sent only its first bytes.
  const answer = await rawHttp(
    t.url,
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: ${64 * 1024 * 1024}\r\n\r\n`,
    new Uint8Array(64 * 1024).fill(32),
  );
  assertMatch(answer, /^HTTP\/1\.1 413 /);
  assertMatch(answer, /"code":"request_too_large"/);
  const next = await t.post("/v1/chat/completions", chat);
  assertEquals(next.status, 200);
  await next.body?.cancel();
  assertEquals(t.upstream.calls, 1);
});

Deno.test("a chunked body over --max-body-size is cut off with 413", async () => {
  await using t = await startTestBridge(["--max-body-size", "64KiB"]);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= 1024 * 1024) return controller.close();
      sent += 16 * 1024;
      controller.enqueue(new Uint8Array(16 * 1024).fill(32));
    },
  });
  const chunks: string[] = [];
  for (const reader = body.getReader();;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(`${value.length.toString(16)}\r\n${new TextDecoder().decode(value)}\r\n`);
  }
  const answer = await rawHttp(
    t.url,
    "POST /v1/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
    ...chunks,
    "0\r\n\r\n",
  );
  assertMatch(answer, /^HTTP\/1\.1 413 /);
  assertMatch(answer, /"code":"request_too_large"/);
  assertEquals(t.upstream.calls, 0);
  const next = await t.post("/v1/chat/completions", chat);
  assertEquals(next.status, 200);
  await next.body?.cancel();
});

Deno.test("a silent upstream stream gets SSE keep-alive comments", async () => {
  await using t = await startTestBridge(["--keepalive-interval", "100"], { upstream: { chunkDelayMs: 350 } });
  const response = await t.post("/v1/chat/completions", { ...chat, stream: true });
  const text = await response.text();
  assertMatch(text, /: keep-alive\n\n/);
  assert(text.endsWith("data: [DONE]\n\n"));
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_stream_keepalives_total [1-9]/);
});

Deno.test("--keepalive-interval 0 sends none; NDJSON streams never get comments", async () => {
  await using t = await startTestBridge(["--keepalive-interval", "0"], { upstream: { chunkDelayMs: 150 } });
  assert(
    !(await (await t.post("/v1/chat/completions", { ...chat, stream: true })).text()).includes("keep-alive"),
  );
  await using n = await startTestBridge(["--keepalive-interval", "50"], { upstream: { chunkDelayMs: 150 } });
  assert(!(await (await n.post("/api/chat", chat)).text()).includes("keep-alive"));
});

Deno.test("a client that sends its body too slowly gets 408, and others are served meanwhile", async () => {
  await using t = await startTestBridge(["--body-read-timeout", "1000"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(t.url).port) });
  const encoder = new TextEncoder();
  await conn.write(
    encoder.encode('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"model"'),
  );
  const start = performance.now();
  const buffer = new Uint8Array(1024);
  let timedOutAt = 0;
  const refusal = conn.read(buffer).then((n) => (timedOutAt = performance.now(), n));
  const other = await t.post("/v1/chat/completions", chat);
  assertEquals(other.status, 200);
  await other.body?.cancel();
  assertEquals(timedOutAt, 0, "another client was served while the slow one dawdled");
  const n = await refusal;
  const answer = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  assertMatch(answer, /^HTTP\/1\.1 408 /);
  assertMatch(answer, /\r\nconnection: close\r\n/i);
  assertMatch(answer, /"code":"request_timeout"/);
  assert(timedOutAt - start >= 900, "not before the --body-read-timeout");
  conn.close();
  assertEquals(t.upstream.calls, 1);
});

Deno.test("an over-long URL gets 414; oversized headers are refused by the HTTP server", async () => {
  await using t = await startTestBridge();
  const long = await fetch(`${t.url}/v1/models?q=${"a".repeat(20_000)}`);
  assertEquals(long.status, 414);
  assertEquals((await long.json()).error.code, "uri_too_long");
  // Deno's HTTP server refuses a head this large with a bare 400 before the bridge sees the request.
  const big = await rawHttp(
    t.url,
    `GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(200_000)}\r\n\r\n`,
  );
  assertMatch(big, /^HTTP\/1\.1 400 /);
  assertEquals(t.upstream.calls, 0);
  assertEquals((await fetch(`${t.url}/health`)).status, 200);
});

Deno.test("Ollama NDJSON streams get keep-alives every client reads as an empty message", async () => {
  await using t = await startTestBridge(["--keepalive-interval", "100"]);
  t.upstream.always({ chunkDelayMs: 350 });
  const text = await (await t.post("/api/chat", chat)).text();
  const lines = text.trim().split("\n").map((line) => JSON.parse(line)); // every line is JSON
  const empty = lines.filter((line) =>
    line.message?.content === "" && line.done === false && line.model === "m"
  );
  assert(empty.length > 0, text);
  assertEquals(lines.at(-1).done, true);
  const generated = await (await t.post("/api/generate", { model: "m", prompt: "p" })).text();
  assert(
    generated.trim().split("\n").map((line) => JSON.parse(line)).some((line) =>
      line.response === "" && !line.done
    ),
  );
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_stream_keepalives_total [1-9]/);
});
