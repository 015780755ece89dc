/** Scale-out (`--redis-url`) when Redis goes away, freezes, or may evict: every replica keeps serving. */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { redisTest, startRedis } from "./redis_server.ts";
import { chat, twoReplicas } from "./redis_fleet.ts";
import { spawnBridge, tempCacheDir } from "./harness.ts";
import { privateCa } from "./private_ca.ts";

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

redisTest(
  "rediss://: a Redis behind TLS with a private CA (trusted through DENO_CERT) is shared",
  async () => {
    const ca = await privateCa();
    try {
      await Deno.writeTextFile(`${ca.dir}/server.crt`, ca.cert);
      await Deno.writeTextFile(`${ca.dir}/server.keyfile`, ca.key);
      await using redis = await startRedis(
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        `${ca.dir}/server.crt`,
        "--tls-key-file",
        `${ca.dir}/server.keyfile`,
        "--tls-ca-cert-file",
        ca.caFile,
        "--tls-auth-clients",
        "no",
      );
      await using upstream = new FakeUpstream();
      await using dir = await tempCacheDir();
      const url = `rediss://localhost:${redis.port}/0`;
      const bridge = await spawnBridge(
        { env: { DENO_CERT: ca.caFile } },
        upstream.url,
        "--enable-cache",
        "--cache-dir",
        dir.path,
        "--redis-url",
        url,
      );
      try {
        await waitFor(
          async () => /^bridge_redis_up 1$/m.test(await (await fetch(`${bridge.url}/metrics`)).text()),
          {
            message: "the bridge reached Redis over TLS",
          },
        );
        const first = await fetch(`${bridge.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(chat("over tls")),
        });
        assertEquals(first.status, 200);
        await first.body?.cancel();
      } finally {
        bridge.process.kill("SIGTERM");
        await bridge.process.status;
      }
      assert(bridge.output().includes("redis is up"), bridge.output());
    } finally {
      await Deno.remove(ca.dir, { recursive: true });
    }
  },
);

redisTest("a replica stops promptly (SIGTERM) while Redis is down or frozen", async () => {
  for (const outage of ["stopped", "frozen"] as const) {
    await using redis = await startRedis();
    await using upstream = new FakeUpstream();
    await using dir = await tempCacheDir();
    const bridge = await spawnBridge(
      upstream.url,
      "--enable-cache",
      "--enable-async-request",
      "--cache-dir",
      dir.path,
      "--redis-url",
      redis.url,
    );
    if (outage === "stopped") await redis.stop();
    else redis.pause();
    try {
      const started = performance.now();
      bridge.process.kill("SIGTERM");
      const status = await bridge.process.status;
      assertEquals(status.code, 0, bridge.output());
      // Well under the default --shutdown-timeout (30 s): nothing waits on Redis.
      assert(
        performance.now() - started < 15_000,
        `${outage}: stopped after ${performance.now() - started} ms`,
      );
    } finally {
      redis.resume();
    }
  }
});

redisTest(
  "replicas started while Redis is down serve alone, then share once it is up (purges too)",
  async () => {
    await using redis = await startRedis();
    await redis.stop();
    await using upstream = new FakeUpstream();
    await using fleet = await twoReplicas(redis.url, upstream, "--admin-key", "admin-key-1");
    const alone = await fleet.a.post("/v1/chat/completions", chat("before redis"));
    assertEquals(alone.status, 200);
    await alone.body?.cancel();
    await redis.start();
    for (const replica of [fleet.a, fleet.b]) {
      await waitFor(
        async () => /^bridge_redis_up 1$/m.test(await (await fetch(`${replica.url}/metrics`)).text()),
        {
          timeout: 20_000,
          message: "redis joined",
        },
      );
    }
    await (await fleet.a.post("/v1/chat/completions", chat("after redis"))).body?.cancel();
    await fleet.a.cacheSettled();
    const shared = await fleet.b.post("/v1/chat/completions", chat("after redis"));
    assertEquals(shared.headers.get("x-cache"), "HIT-REDIS");
    await shared.body?.cancel();
    // The purge channel was subscribed in the background: a purge at A reaches B.
    await waitFor(async () => {
      await (await fleet.a.post("/admin/cache/purge", {}, { authorization: "Bearer admin-key-1" })).body
        ?.cancel();
      return fleet.b.logs.some((line) => line.includes("cache purged at another replica's request"));
    }, { timeout: 20_000, interval: 500, message: "B heard A's purge" });
  },
);
