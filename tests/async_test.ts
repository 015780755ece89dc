/** Async (request_fingerprint) jobs through the real server. */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { signalTest, spawnBridge, startTestBridge, tempCacheDir } from "./harness.ts";

const job = (fingerprint: string, extra: Record<string, unknown> = {}) => ({
  model: "m",
  messages: [{ role: "user", content: "a long question" }],
  request_fingerprint: fingerprint,
  ...extra,
});

async function poll(send: () => Promise<Response>, timeoutMs = 5000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await send();
    if (response.status !== 202) return response;
    await response.body?.cancel();
    if (Date.now() > deadline) throw new Error("the job never finished");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function asyncBridge(dir: string, ...flags: string[]) {
  return await startTestBridge(["--enable-async-request", "--cache-dir", dir, ...flags]);
}

Deno.test("202, 202, then the answer: exactly one upstream call; the fingerprint never reaches the upstream", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path);
  t.upstream.always({ delayMs: 300 });
  const first = await t.post("/v1/chat/completions", job("fp-1"));
  assertEquals(first.status, 202);
  assertEquals(first.headers.get("retry-after"), "1");
  assertEquals(await first.json(), {
    message: "Wait for a while and try again.",
    request_fingerprint: "fp-1",
  });
  const second = await t.post("/v1/chat/completions", job("fp-1"));
  assertEquals(second.status, 202);
  await second.body?.cancel();
  const done = await poll(() => t.post("/v1/chat/completions", job("fp-1")));
  assertEquals(done.status, 200);
  assertEquals((await done.json()).choices[0].message.content, "Hello from the fake upstream.");
  assertEquals(t.upstream.calls, 1);
  assertEquals(JSON.parse(t.upstream.received[0].body).request_fingerprint, undefined);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_async_jobs_total\{state="accepted"\} 1/);
  assertMatch(metrics, /bridge_async_jobs_total\{state="completed"\} 1/);
  assertMatch(metrics, /bridge_async_jobs_pending 0/);
});

Deno.test("two concurrent submissions of the same job make one upstream call", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path);
  t.upstream.always({ delayMs: 100 });
  const [a, b] = await Promise.all([
    t.post("/v1/chat/completions", job("fp-2")),
    t.post("/v1/chat/completions", job("fp-2")),
  ]);
  assertEquals([a.status, b.status], [202, 202]);
  await Promise.all([a.text(), b.text()]);
  await (await poll(() => t.post("/v1/chat/completions", job("fp-2")))).text();
  assertEquals(t.upstream.calls, 1);
});

Deno.test("a stream: true job is answered as an SSE replay, think filter applied", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path);
  t.upstream.always({ reply: "<think>plan</think>Done." });
  await (await t.post("/v1/chat/completions", job("fp-3", { stream: true }))).text();
  const done = await poll(() => t.post("/v1/chat/completions", job("fp-3", { stream: true })));
  assertEquals(done.headers.get("content-type"), "text/event-stream");
  const text = await done.text();
  assert(text.endsWith("data: [DONE]\n\n"));
  assert(text.includes("Done.") && !text.includes("plan"), "the think filter applies on the replay");
});

Deno.test("a job whose upstream fails after retries returns the error", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(
    dir.path,
    "--retry-attempts",
    "1",
    "--retry-min-interval",
    "50",
    "--retry-max-interval",
    "50",
  );
  t.upstream.plan({ status: 503, body: '{"error":"busy"}' }, { status: 503, body: '{"error":"still busy"}' });
  await (await t.post("/v1/chat/completions", job("fp-4"))).text();
  const done = await poll(() => t.post("/v1/chat/completions", job("fp-4")));
  assertEquals(done.status, 503);
  assertEquals(await done.json(), { error: "still busy" });
  assertEquals(t.upstream.calls, 2);
  // A store of its own: bridges sharing one in a process would run each other's jobs.
  await using otherDir = await tempCacheDir();
  await using unreachable = await startTestBridge(["--enable-async-request", "--cache-dir", otherDir.path], {
    upstreamUrl: "http://127.0.0.1:9",
  });
  await (await unreachable.post("/v1/chat/completions", job("fp-5"))).text();
  const failed = await poll(() => unreachable.post("/v1/chat/completions", job("fp-5")));
  assertEquals(failed.status, 502);
  assertEquals((await failed.json()).error.code, "upstream_unreachable");
});

Deno.test("the same fingerprint with a different request is a 409; a malformed fingerprint a 400", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path);
  await (await t.post("/v1/chat/completions", job("fp-6"))).text();
  const conflict = await t.post("/v1/chat/completions", job("fp-6", { temperature: 0.9 }));
  assertEquals(conflict.status, 409);
  assertEquals((await conflict.json()).error.code, "request_fingerprint_conflict");
  for (const bad of ["", "x".repeat(257), "tab\there", 42]) {
    const response = await t.post("/v1/chat/completions", job(bad as string));
    assertEquals(response.status, 400, JSON.stringify(bad));
    assertEquals((await response.json()).error.code, "invalid_request_fingerprint");
  }
});

Deno.test("requests without the field stay synchronous; without the flag the field is passed on", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path);
  const plain = await t.post("/v1/chat/completions", { model: "m", messages: [] });
  assertEquals(plain.status, 200);
  await plain.body?.cancel();
  await using off = await startTestBridge();
  const passed = await off.post("/v1/chat/completions", job("fp-7"));
  assertEquals(passed.status, 200);
  await passed.body?.cancel();
  assertEquals(JSON.parse(off.upstream.received[0].body).request_fingerprint, "fp-7");
});

Deno.test("results expire after --async-result-ttl", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(dir.path, "--async-result-ttl", "1000");
  await (await t.post("/v1/chat/completions", job("fp-8"))).text();
  assertEquals((await poll(() => t.post("/v1/chat/completions", job("fp-8")))).status, 200);
  await new Promise((resolve) => setTimeout(resolve, 1200));
  // Expired: the fingerprint is free again, and the same submission is a new job.
  const again = await t.post("/v1/chat/completions", job("fp-8"));
  assertEquals(again.status, 202);
  await again.body?.cancel();
  await (await poll(() => t.post("/v1/chat/completions", job("fp-8")))).text();
  assertEquals(t.upstream.calls, 2);
});

signalTest("a bridge killed (SIGKILL) right after a 202 delivers the result after a restart", async () => {
  await using dir = await tempCacheDir();
  const upstream = new FakeUpstream();
  upstream.always({ delayMs: 1000 }); // the job is still waiting on the upstream when the bridge dies
  try {
    const first = await spawnBridge(upstream.url, "--enable-async-request", "--cache-dir", dir.path);
    const send = (url: string) =>
      fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(job("fp-crash")) });
    const accepted = await send(first.url);
    assertEquals(accepted.status, 202);
    await accepted.body?.cancel();
    first.process.kill("SIGKILL");
    await first.process.status;
    upstream.always({});
    const second = await spawnBridge(upstream.url, "--enable-async-request", "--cache-dir", dir.path);
    const done = await poll(() => send(second.url), 10_000);
    assertEquals(done.status, 200);
    assertEquals((await done.json()).choices[0].message.content, "Hello from the fake upstream.");
    assertMatch(second.output(), /async jobs resumed jobs=1/);
    second.process.kill("SIGTERM");
    assertEquals((await second.process.status).code, 0);
  } finally {
    await upstream.close();
  }
});

Deno.test("with access keys or shared mode, a job's stored request holds no credentials", async () => {
  await using dir = await tempCacheDir();
  await using t = await asyncBridge(
    dir.path,
    "--enable-shared-mode",
    "--api-key",
    "sk-upstream-123456",
    "--access-key",
    "team:ak-secret-98765",
  );
  t.upstream.always({ delayMs: 300 });
  const accepted = await t.post("/v1/chat/completions", job("fp-keys"), {
    authorization: "Bearer ak-secret-98765",
  });
  assertEquals(accepted.status, 202);
  await accepted.body?.cancel();
  // While the job waits on the upstream, look at what is on disk.
  const kv = await Deno.openKv(`${dir.path}/jobs.kv`);
  try {
    const stored = await Array.fromAsync(kv.list({ prefix: ["job"] }));
    assertEquals(stored.length, 1);
    assert(!JSON.stringify(stored[0].value).includes("ak-secret-98765"), "no access key on disk");
  } finally {
    kv.close();
  }
  const done = await poll(() =>
    t.post("/v1/chat/completions", job("fp-keys"), { authorization: "Bearer ak-secret-98765" })
  );
  assertEquals(done.status, 200);
  await done.body?.cancel();
  assertEquals(t.upstream.received[0].headers.get("authorization"), "Bearer sk-upstream-123456");
});
