/**
 * Scale-out (`--redis-url`), async jobs and secrets: a job taken by one replica is answered by another, survives
 * the death of the replica running it; no credential is in Redis in clear; key cooldowns reach every replica.
 */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { spawnBridge, tempCacheDir } from "./harness.ts";
import { createClient } from "redis";
import { redisTest, startRedis } from "./redis_server.ts";
import { chat, job, jobAnswer, twoReplicas } from "./redis_fleet.ts";

/** Shared mode with a pool of two upstream keys. */
const SHARED_KEYS = [
  "--enable-shared-mode",
  "--api-key",
  "upstream-key-one",
  "--api-key",
  "upstream-key-two",
];

redisTest("an async job accepted by one replica is answered by the other", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "job result" });
  await using fleet = await twoReplicas(redis.url, upstream, "--enable-async-request");
  const accepted = await fleet.a.post("/v1/chat/completions", job("fp-shared"));
  assertEquals(accepted.status, 202);
  await accepted.body?.cancel();
  const done = await jobAnswer(fleet.b, "fp-shared", {}, {
    message: "the job's result at the other replica",
  });
  assertEquals(done.status, 200);
  assertEquals((await done.json()).choices[0].message.content, "job result");
  assertEquals(upstream.received.length, 1);
  const conflict = await fleet.b.post("/v1/chat/completions", job("fp-shared", "another task"));
  assertEquals(conflict.status, 409);
  await conflict.body?.cancel();
});

redisTest("a replica killed mid-job loses nothing: another claims the job and finishes it", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "finished elsewhere" });
  await using dir = await tempCacheDir();
  upstream.plan({ delayMs: 30_000 }); // the first replica's call never ends: it dies first
  const a = await spawnBridge(
    upstream.url,
    "--enable-async-request",
    "--cache-dir",
    dir.path,
    "--redis-url",
    redis.url,
  );
  try {
    const accepted = await fetch(`${a.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(job("fp-crash")),
    });
    assertEquals(accepted.status, 202);
    await accepted.body?.cancel();
    await waitFor(() => upstream.received.length === 1, { message: "the job reached the upstream" });
  } finally {
    a.process.kill("SIGKILL");
    await a.process.status;
  }
  await using fleet = await twoReplicas(redis.url, upstream, "--enable-async-request");
  // Until a survivor claims it, the job is the fleet's one pending job, seen from any replica's metrics.
  await waitFor(
    async () => /^bridge_async_jobs_pending 1$/m.test(await (await fetch(`${fleet.b.url}/metrics`)).text()),
    {
      message: "the dead replica's job counted as pending",
    },
  );
  const done = await jobAnswer(fleet.b, "fp-crash", {}, {
    timeout: 30_000,
    interval: 250,
    message: "the job finished by a surviving replica",
  });
  assertEquals(done.status, 200);
  assertEquals((await done.json()).choices[0].message.content, "finished elsewhere");
  assertEquals(upstream.received.length, 2);
});

redisTest(
  "no credential is in Redis in clear: answers, flights, jobs (sealed) and key cooldowns",
  async () => {
    await using redis = await startRedis();
    await using upstream = new FakeUpstream({ reply: "private" });
    const credential = "sk-client-secret-0123456789";
    await using fleet = await twoReplicas(
      redis.url,
      upstream,
      "--enable-async-request",
      "--redis-secret",
      "fleet-secret-for-tests",
    );
    const auth = { authorization: `Bearer ${credential}` };
    await (await fleet.a.post("/v1/chat/completions", chat("mine"), auth)).body?.cancel();
    await (await fleet.a.post("/v1/chat/completions", chat("stream", { stream: true }), auth)).body?.cancel();
    upstream.plan({ delayMs: 1500 }); // the job is still waiting (its request in Redis) when Redis is read
    const accepted = await fleet.b.post("/v1/chat/completions", job("fp-secret"), auth);
    assertEquals(accepted.status, 202);
    await accepted.body?.cancel();
    await waitFor(() => upstream.received.length === 3, { message: "the job's upstream call" });
    assertEquals(upstream.received[2].headers.get("authorization"), `Bearer ${credential}`);
    const contents = await redis.dump();
    assert(
      [...contents.keys()].some((name) => name.startsWith("bridge:jobreq:")),
      "the job's request is kept",
    );
    for (const [name, value] of contents) {
      assert(!name.includes(credential) && !value.includes(credential), `${name} holds the credential`);
      assert(!value.includes("fleet-secret-for-tests"), `${name} holds the Redis secret`);
    }
    // The job sealed under the fleet's secret still runs: its answer comes back to the client.
    const done = await jobAnswer(fleet.a, "fp-secret", auth, { message: "the sealed job's result" });
    assertEquals(done.status, 200);
    await done.body?.cancel();
  },
);

redisTest("without --redis-secret a job that must keep a credential is refused at submission", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using fleet = await twoReplicas(redis.url, upstream, "--enable-async-request");
  const refused = await fleet.a.post("/v1/chat/completions", job("fp-cred"), {
    authorization: "Bearer sk-mine",
  });
  assertEquals(refused.status, 503);
  const body = await refused.json();
  assertEquals(body.error.code, "async_needs_redis_secret");
  assert(body.error.message.includes("--redis-secret"), body.error.message);
  assertEquals(upstream.received.length, 0);
  const ollama = await fleet.a.post("/api/chat", job("fp-cred-2"), { authorization: "Bearer sk-mine" });
  assertEquals(ollama.status, 503);
  assert(typeof (await ollama.json()).error === "string", "Ollama's error shape on /api");
  // A job with no credential to keep is taken as usual.
  const accepted = await fleet.a.post("/v1/chat/completions", job("fp-plain"));
  assertEquals(accepted.status, 202);
  await accepted.body?.cancel();
});

redisTest("shared mode: a key cooled down by a 429 at one replica is cooled down at the other", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using fleet = await twoReplicas(redis.url, upstream, ...SHARED_KEYS);
  upstream.plan({ status: 429, body: '{"error":"slow down"}', headers: { "retry-after": "60" } });
  await (await fleet.a.post("/v1/chat/completions", chat("first"))).body?.cancel();
  assertEquals(upstream.received[0].headers.get("authorization"), "Bearer upstream-key-one");
  const healthy = async () =>
    /^bridge_upstream_keys_healthy 1$/m.test(await (await fetch(`${fleet.b.url}/metrics`)).text());
  await waitFor(healthy, { message: "replica B cooled the key down" });
  const before = upstream.received.length;
  await (await fleet.b.post("/v1/chat/completions", chat("second"))).body?.cancel();
  assertEquals(upstream.received[before].headers.get("authorization"), "Bearer upstream-key-two");
  const contents = await redis.dump();
  for (const [name, value] of contents) {
    assert(!`${name}${value}`.includes("upstream-key-"), `${name} holds a pooled key in clear`);
  }
});

redisTest(
  "with --redis-secret, a job request planted in Redis unsealed is dropped, never sent upstream",
  async () => {
    await using redis = await startRedis();
    await using upstream = new FakeUpstream();
    await using fleet = await twoReplicas(
      redis.url,
      upstream,
      "--enable-async-request",
      "--redis-secret",
      "the-fleet-secret",
    );
    const id = "f".repeat(64);
    const forged = JSON.stringify({
      method: "POST",
      path: "/v1/chat/completions",
      search: "",
      headers: [["content-type", "application/json"]],
      body: JSON.stringify(chat("planted")),
    });
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      await client.set(`bridge:job:${id}`, JSON.stringify({ digest: "x", state: "pending", createdAt: 0 }));
      await client.set(`bridge:jobreq:${id}`, forged);
      await client.xAdd("bridge:jobs", "*", { id });
      await waitFor(async () => (await client.exists(`bridge:job:${id}`)) === 0, {
        message: "the job dropped",
      });
      assertEquals(await client.exists(`bridge:jobreq:${id}`), 0);
      assertEquals(upstream.received.length, 0);
      assert(
        fleet.a.logs.concat(fleet.b.logs).some((line) =>
          line.includes("does not open with this --redis-secret")
        ),
      );
    } finally {
      await client.close();
    }
  },
);

redisTest("a replica that starts after a key was cooled down elsewhere cools it down too", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using first = await twoReplicas(redis.url, upstream, ...SHARED_KEYS);
  upstream.plan({ status: 429, body: '{"error":"slow down"}', headers: { "retry-after": "120" } });
  await (await first.a.post("/v1/chat/completions", chat("cool it"))).body?.cancel();
  await using later = await twoReplicas(redis.url, upstream, ...SHARED_KEYS);
  const healthy = async () =>
    /^bridge_upstream_keys_healthy 1$/m.test(await (await fetch(`${later.a.url}/metrics`)).text());
  await waitFor(healthy, { message: "the later replica read the verdict" });
});
