/**
 * Scale-out (`--redis-url`): two bridges and one real redis-server. Answers, flights, the rate limit, async
 * jobs and key cooldowns are shared; an outage leaves each replica serving alone; nothing secret is in Redis.
 */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { spawnBridge, startTestBridge, tempCacheDir } from "./harness.ts";
import { createClient } from "redis";
import { redisTest, startRedis } from "./redis_server.ts";

const chat = (content = "hi", extra: Record<string, unknown> = {}) => ({
  model: "deepseek-r1:7b",
  messages: [{ role: "user", content }],
  ...extra,
});

/** Two replicas of the bridge in front of one upstream, sharing `redisUrl`. */
async function twoReplicas(redisUrl: string, upstream: FakeUpstream, ...flags: string[]) {
  const dirA = await tempCacheDir();
  const dirB = await tempCacheDir();
  const start = (dir: string) =>
    startTestBridge(["--enable-cache", "--cache-dir", dir, "--redis-url", redisUrl, ...flags], {
      sharedUpstream: upstream,
    });
  const a = await start(dirA.path);
  const b = await start(dirB.path);
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a[Symbol.asyncDispose]();
      await b[Symbol.asyncDispose]();
      await dirA[Symbol.asyncDispose]();
      await dirB[Symbol.asyncDispose]();
    },
  };
}

redisTest("an answer stored by one replica is a HIT-REDIS on the other", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "shared answer" });
  await using fleet = await twoReplicas(redis.url, upstream);
  const first = await fleet.a.post("/v1/chat/completions", chat());
  assertEquals(first.headers.get("x-cache"), "MISS");
  const firstBody = await first.json();
  await fleet.a.cacheSettled();
  const second = await fleet.b.post("/v1/chat/completions", chat());
  assertEquals(second.headers.get("x-cache"), "HIT-REDIS");
  assertEquals(await second.json(), firstBody);
  assertEquals(upstream.received.length, 1);
  // Another credential is another tenant: never served the first one's answer.
  const other = await fleet.b.post("/v1/chat/completions", chat(), { authorization: "Bearer other-user" });
  assertEquals(other.headers.get("x-cache"), "MISS");
  await other.body?.cancel();
});

redisTest("identical requests at two replicas make one upstream call, followed live", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "one two three four five six", chunkDelayMs: 60 });
  await using fleet = await twoReplicas(redis.url, upstream);
  const body = chat("stream me", { stream: true });
  const first = fleet.a.post("/v1/chat/completions", body);
  await waitFor(() => upstream.received.length === 1, { message: "the leader's upstream call" });
  const second = await fleet.b.post("/v1/chat/completions", body);
  assertEquals(second.headers.get("x-cache"), "COALESCED");
  const [textA, textB] = await Promise.all([first.then((r) => r.text()), second.text()]);
  assertEquals(textB, textA);
  assert(textA.includes("[DONE]"), textA);
  assertEquals(upstream.received.length, 1);
  // Once over, the answer is stored for everyone.
  await fleet.a.cacheSettled();
  const third = await fleet.b.post("/v1/chat/completions", body);
  assertEquals(third.headers.get("x-cache"), "HIT-REDIS");
  assertEquals(await third.text(), textA);
});

redisTest("the rate limit is the fleet's: 60 requests over two replicas at -r 10", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using fleet = await twoReplicas(redis.url, upstream, "-r", "10");
  const started = performance.now();
  const statuses = await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const replica = i % 2 ? fleet.a : fleet.b;
      const response = await replica.post("/v1/chat/completions", chat(`request ${i}`));
      await response.body?.cancel();
      return {
        status: response.status,
        at: performance.now() - started,
        retryAfter: response.headers.get("retry-after"),
      };
    }),
  );
  const passed = statuses.filter((s) => s.status === 200);
  const refused = statuses.filter((s) => s.status === 429);
  assertEquals(passed.length + refused.length, 60);
  // A burst of 10, then 10 a second: about 20 within the first second, whichever replica they reached.
  const firstSecond = passed.filter((s) => s.at < 1000).length;
  assert(firstSecond >= 10 && firstSecond <= 22, `${firstSecond} passed in the first second`);
  assert(refused.every((s) => Number(s.retryAfter) >= 1), "every 429 says when to retry");
});

redisTest("a purge at one replica reaches the other's memory and disk tiers", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using fleet = await twoReplicas(redis.url, upstream, "--admin-key", "admin-secret-1");
  await (await fleet.a.post("/v1/chat/completions", chat("purge me"))).body?.cancel();
  await fleet.a.cacheSettled();
  assertEquals(
    (await fleet.b.post("/v1/chat/completions", chat("purge me"))).headers.get("x-cache"),
    "HIT-REDIS",
  );
  const purge = await fleet.a.post("/admin/cache/purge", {}, { authorization: "Bearer admin-secret-1" });
  assertEquals(purge.status, 200);
  const { purged } = await purge.json();
  assert(purged.redis >= 1, JSON.stringify(purged));
  await waitFor(
    () => fleet.b.logs.some((line) => line.includes("cache purged at another replica's request")),
    {
      message: "replica B heard the purge",
    },
  );
  const after = await fleet.b.post("/v1/chat/completions", chat("purge me"));
  assertEquals(after.headers.get("x-cache"), "MISS");
  await after.body?.cancel();
});

const job = (fingerprint: string, content = "a long task") => ({
  ...chat(content),
  request_fingerprint: fingerprint,
});

redisTest("an async job accepted by one replica is answered by the other", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "job result" });
  await using fleet = await twoReplicas(redis.url, upstream, "--enable-async-request");
  const accepted = await fleet.a.post("/v1/chat/completions", job("fp-shared"));
  assertEquals(accepted.status, 202);
  await accepted.body?.cancel();
  const done = await waitFor(async () => {
    const poll = await fleet.b.post("/v1/chat/completions", job("fp-shared"));
    if (poll.status === 202) return void await poll.body?.cancel();
    return poll;
  }, { message: "the job's result at the other replica" });
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
  const done = await waitFor(async () => {
    const poll = await fleet.b.post("/v1/chat/completions", job("fp-crash"));
    if (poll.status === 202) return void await poll.body?.cancel();
    return poll;
  }, { timeout: 30_000, interval: 250, message: "the job finished by a surviving replica" });
  assertEquals(done.status, 200);
  assertEquals((await done.json()).choices[0].message.content, "finished elsewhere");
  assertEquals(upstream.received.length, 2);
});

redisTest(
  "Redis stopped mid-load: no client error, /ready stays ready, sharing resumes after restart",
  async () => {
    await using redis = await startRedis();
    await using upstream = new FakeUpstream();
    await using fleet = await twoReplicas(redis.url, upstream, "-r", "1000");
    const metric = async (replica: typeof fleet.a) => (await (await fetch(`${replica.url}/metrics`)).text());
    // Requests keep arriving, a few ms apart, while Redis goes away under them.
    const load = Array.from({ length: 40 }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 10));
      const response = await (i % 2 ? fleet.a : fleet.b).post("/v1/chat/completions", chat(`mid-load ${i}`));
      await response.body?.cancel();
      return response.status;
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    await redis.stop();
    const statuses = await Promise.all(load);
    assertEquals(statuses.filter((status) => status !== 200), []);
    for (const replica of [fleet.a, fleet.b]) {
      assertEquals((await fetch(`${replica.url}/ready`)).status, 200);
      await waitFor(async () => /^bridge_redis_up 0$/m.test(await metric(replica)), {
        message: "redis down",
      });
    }
    assert(fleet.a.logs.some((line) => line.includes("redis is down")), "a log line says Redis went away");
    await redis.start();
    for (const replica of [fleet.a, fleet.b]) {
      await waitFor(async () => /^bridge_redis_up 1$/m.test(await metric(replica)), {
        timeout: 20_000,
        message: "redis up again",
      });
    }
    assert(fleet.a.logs.some((line) => line.includes("redis is up")), "a log line says Redis is back");
    await (await fleet.a.post("/v1/chat/completions", chat("after the outage"))).body?.cancel();
    await fleet.a.cacheSettled();
    const shared = await fleet.b.post("/v1/chat/completions", chat("after the outage"));
    assertEquals(shared.headers.get("x-cache"), "HIT-REDIS");
    await shared.body?.cancel();
  },
);

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
    const done = await waitFor(async () => {
      const poll = await fleet.a.post("/v1/chat/completions", job("fp-secret"), auth);
      if (poll.status === 202) return void await poll.body?.cancel();
      return poll;
    }, { message: "the sealed job's result" });
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
  await using fleet = await twoReplicas(
    redis.url,
    upstream,
    "--enable-shared-mode",
    "--api-key",
    "upstream-key-one",
    "--api-key",
    "upstream-key-two",
  );
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

redisTest("a leader replica that dies before answering: a follower takes its flight over", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "taken over" });
  await using dir = await tempCacheDir();
  upstream.plan({ delayMs: 30_000 });
  const a = await spawnBridge(
    upstream.url,
    "--enable-cache",
    "--cache-dir",
    dir.path,
    "--redis-url",
    redis.url,
  );
  await using fleet = await twoReplicas(redis.url, upstream);
  let followed: Promise<Response>;
  try {
    fetch(`${a.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat("lead me")),
    }).then((r) => r.body?.cancel(), () => {});
    await waitFor(() => upstream.received.length === 1, { message: "the leader's upstream call" });
    followed = fleet.b.post("/v1/chat/completions", chat("lead me"));
    await new Promise((resolve) => setTimeout(resolve, 300)); // B is following A's flight now
  } finally {
    a.process.kill("SIGKILL");
    await a.process.status;
  }
  const answer = await followed;
  assertEquals(answer.status, 200);
  assertEquals((await answer.json()).choices[0].message.content, "taken over");
  assertEquals(upstream.received.length, 2);
});

redisTest("what is in Redis is checked: garbage answers and flights are misses, never errors", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream({ reply: "fresh" });
  await using fleet = await twoReplicas(redis.url, upstream);
  await (await fleet.a.post("/v1/chat/completions", chat("tampered"))).body?.cancel();
  await fleet.a.cacheSettled();
  const names = [...(await redis.dump()).keys()].filter((name) => name.startsWith("bridge:answer:"));
  assertEquals(names.length, 1);
  const client = createClient({ url: redis.url });
  await client.connect();
  try {
    await client.set(names[0], "\x00\x00\x00\x10{not an answer", { PX: 60_000 });
    const garbage = await fleet.b.post("/v1/chat/completions", chat("tampered"));
    assertEquals(garbage.status, 200);
    assertEquals(garbage.headers.get("x-cache"), "MISS");
    await garbage.body?.cancel();
    await fleet.b.cacheSettled();
    // A flight lease held by nobody, whose stream starts with a head no bridge wrote.
    const key = names[0].slice("bridge:answer:".length);
    await client.del(names[0]);
    await client.set(`bridge:flight:${key}`, "forged-token", { PX: 60_000 });
    await client.xAdd(`bridge:flight:${key}:forged-token`, "*", { t: "head", v: '{"status":"x"}' });
    const forged = await fleet.a.post("/v1/chat/completions", chat("tampered"), {
      "cache-control": "max-age=0",
    });
    assertEquals(forged.status, 200);
    assertEquals((await forged.json()).choices[0].message.content, "fresh");
  } finally {
    await client.close();
  }
});

redisTest(
  "a Redis whose eviction policy could drop pending jobs is named in a warning at start",
  async () => {
    await using redis = await startRedis("--maxmemory-policy", "allkeys-lru");
    await using upstream = new FakeUpstream();
    await using fleet = await twoReplicas(redis.url, upstream);
    assert(fleet.a.logs.some((line) => line.includes("maxmemory-policy") && line.includes("volatile-lru")));
  },
);

redisTest("a frozen Redis (every command slower than 50 ms) is worked around, then used again", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using fleet = await twoReplicas(redis.url, upstream, "-r", "1000", "--enable-async-request");
  const metric = async () => await (await fetch(`${fleet.a.url}/metrics`)).text();
  redis.pause();
  try {
    const started = performance.now();
    const response = await fleet.a.post("/v1/chat/completions", chat("while frozen"));
    assertEquals(response.status, 200);
    await response.body?.cancel();
    // The deadline is 50 ms a command: the answer does not wait for Redis (bounded generously).
    assert(performance.now() - started < 5000, "the request did not hang on Redis");
    await waitFor(async () => /^bridge_redis_up 0$/m.test(await metric()), { message: "redis marked down" });
    const job = await fleet.a.post("/v1/chat/completions", {
      ...chat("job"),
      request_fingerprint: "fp-frozen",
    });
    assertEquals(job.status, 503);
    assertEquals(job.headers.get("retry-after"), "1");
    assertEquals((await job.json()).error.code, "async_store_unavailable");
  } finally {
    redis.resume();
  }
  await waitFor(async () => /^bridge_redis_up 1$/m.test(await metric()), {
    timeout: 20_000,
    message: "back up",
  });
});

redisTest("two fleets with their own --redis-prefix share one Redis and nothing else", async () => {
  await using redis = await startRedis();
  await using upstream = new FakeUpstream();
  await using blue = await twoReplicas(redis.url, upstream, "--redis-prefix", "blue:");
  await using green = await twoReplicas(redis.url, upstream, "--redis-prefix", "green:");
  await (await blue.a.post("/v1/chat/completions", chat("which fleet"))).body?.cancel();
  await blue.a.cacheSettled();
  const sameFleet = await blue.b.post("/v1/chat/completions", chat("which fleet"));
  assertEquals(sameFleet.headers.get("x-cache"), "HIT-REDIS");
  await sameFleet.body?.cancel();
  const otherFleet = await green.b.post("/v1/chat/completions", chat("which fleet"));
  assertEquals(otherFleet.headers.get("x-cache"), "MISS");
  await otherFleet.body?.cancel();
  await green.b.cacheSettled();
  const names = [...(await redis.dump()).keys()];
  assert(names.every((name) => name.startsWith("blue:") || name.startsWith("green:")), names.join(" "));
});
