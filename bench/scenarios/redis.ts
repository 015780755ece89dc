/**
 * Scale-out (issue 19): a hit served from the fleet's Redis tier against one from the local disk tier (both
 * with promotion to memory off, so every hit reads its tier), and the time to first byte of a request that
 * follows an identical request's flight on another replica against one that follows it on the same replica.
 * A real redis-server on a loopback port; skipped with a note when it is not installed.
 */
import { redisServerPath, startRedis } from "../../tests/redis_server.ts";
import { chatLoad, median } from "../lib/load.ts";
import { Servers } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const BODIES = Array.from(
  { length: 64 },
  (_, n) => JSON.stringify({ model: "m", messages: [{ role: "user", content: `shared question ${n}` }] }),
);
/** Every hit reads its tier: nothing is promoted to memory. */
const NO_PROMOTION = ["--cache-hot-threshold", "100000", "--cache-memory-entries", "16"];

export async function redis(context: BenchContext): Promise<Row[]> {
  if (!redisServerPath()) {
    console.log("note: redis-server is not installed: the redis scenario is skipped");
    return [];
  }
  await using server = await startRedis();
  const dir = await Deno.makeTempDir({ prefix: "bench-redis-" });
  try {
    // Declared in the block: the servers stop before their folder goes.
    await using servers = new Servers();
    const upstream = await servers.start(
      1,
      "tests/fake_upstream.ts",
      "--port",
      "{port}",
      "--chunk-delay",
      "40",
    );
    const bridge = (name: string, ...flags: string[]) =>
      servers.start(
        0,
        "main.ts",
        "--listen",
        "127.0.0.1:{port}",
        "--ollama",
        `http://127.0.0.1:${upstream}`,
        "--enable-cache",
        "--cache-dir",
        `${dir}/${name}`,
        ...flags,
      );
    const local = await bridge("local", ...NO_PROMOTION);
    const writer = await bridge("writer", "--redis-url", server.url);
    const reader = await bridge("reader", "--redis-url", server.url, ...NO_PROMOTION);
    for (const body of BODIES) {
      await post(local, body);
      await post(writer, body); // stored in Redis: the reader's hits come from there
    }
    await new Promise((resolve) => setTimeout(resolve, 500)); // stored
    const load = (port: number, connections: number) => chatLoad(port, connections, context.seconds, BODIES);
    const rates = { local: [] as number[], redis: [] as number[] };
    const p50 = { local: [] as number[], redis: [] as number[] };
    for (let round = 0; round < context.rounds; round++) {
      rates.local.push((await load(local, 32)).requestsPerSecond);
      rates.redis.push((await load(reader, 32)).requestsPerSecond);
      p50.local.push((await load(local, 1)).p50Ms);
      p50.redis.push((await load(reader, 1)).p50Ms);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${reader}/metrics`)).text();
    const redisHits = Number(
      /bridge_cache_requests_total\{result="HIT-REDIS"\} (\d+)/.exec(metrics)?.[1] ?? 0,
    );
    const follow = await followerFirstBytes(writer, reader, context.rounds * 5);
    return [
      {
        scenario: "redis",
        metric: "hit from Redis tier (32 conn)",
        value: median(rates.redis),
        unit: "req/s",
      },
      {
        scenario: "redis",
        metric: "hit from local disk tier (32 conn)",
        value: median(rates.local),
        unit: "req/s",
      },
      {
        scenario: "redis",
        metric: "Redis hit / disk hit, req/s",
        value: median(rates.redis) / median(rates.local),
        unit: "x",
        detail: `rounds: ${rates.redis.map((rate, i) => (rate / rates.local[i]).toFixed(2)).join(" ")}; ` +
          `HIT-REDIS served: ${redisHits}`,
      },
      { scenario: "redis", metric: "hit from Redis tier p50 (1 conn)", value: median(p50.redis), unit: "ms" },
      {
        scenario: "redis",
        metric: "hit from local disk tier p50 (1 conn)",
        value: median(p50.local),
        unit: "ms",
      },
      {
        scenario: "redis",
        metric: "follower TTFB, other replica - same replica",
        value: follow.other - follow.same,
        unit: "ms",
        target: { op: "<=", value: 2 },
        detail: `p50 same replica ${follow.same.toFixed(2)} ms, other replica ${follow.other.toFixed(2)} ms`,
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function post(port: number, body: string): Promise<void> {
  await (await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: "POST", body })).text();
}

/**
 * A streamed request starts a flight at `leader`; once it runs, an identical request at the same replica and
 * one at `other` start together: the medians of their times to first byte.
 */
async function followerFirstBytes(
  leader: number,
  other: number,
  samples: number,
): Promise<{ same: number; other: number }> {
  const same: number[] = [];
  const remote: number[] = [];
  const firstByte = async (port: number, body: string) => {
    const start = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: "POST", body });
    const reader = response.body!.getReader();
    await reader.read();
    const at = performance.now() - start;
    await reader.cancel();
    return at;
  };
  for (let i = 0; i < samples; i++) {
    const body = JSON.stringify({
      model: "m",
      stream: true,
      messages: [{ role: "user", content: `follow ${i} ${crypto.randomUUID()}` }],
    });
    const lead = fetch(`http://127.0.0.1:${leader}/v1/chat/completions`, { method: "POST", body });
    const first = await lead;
    const reader = first.body!.getReader();
    await reader.read(); // the flight runs: its head and first chunk are out
    const [a, b] = await Promise.all([firstByte(leader, body), firstByte(other, body)]);
    same.push(a);
    remote.push(b);
    while (!(await reader.read()).done) { /* the leader's client reads to the end */ }
  }
  return { same: median(same), other: median(remote) };
}
