/**
 * Scale-out (`--redis-url`), answers and flights: two bridges and one real redis-server. A HIT across replicas,
 * one upstream call for identical requests, a follower taking over a dead leader, the global rate limit, purges,
 * prefixes; what is read from Redis is checked.
 */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { spawnBridge, tempCacheDir } from "./harness.ts";
import { createClient } from "redis";
import { redisTest, startRedis } from "./redis_server.ts";
import { chat, twoReplicas } from "./redis_fleet.ts";

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
