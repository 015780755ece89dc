/**
 * Cache (issue 5): hit throughput against a bare Deno.serve answering the same bytes, disk-tier hit latency, and
 * a large store: fill time, file size, start-up time and RSS after opening. The memory tier's admission policy
 * is simulated in admission.ts.
 */
import { DiskTier } from "../../src/cache/disk.ts";
import { chatLoad, median } from "../lib/load.ts";
import { denoArgs, freePort, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "cached question" }] });
const DISK_BODIES = Array.from(
  { length: 64 },
  (_, n) => JSON.stringify({ model: "m", messages: [{ role: "user", content: `disk question ${n}` }] }),
);

export async function cache(context: BenchContext & { fillEntries: number }): Promise<Row[]> {
  return [...await hits(context), ...await largeStore(context.fillEntries)];
}

async function hits(context: BenchContext): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-cache-" });
  const upstreamPort = freePort();
  const barePort = freePort();
  const bridgePort = freePort();
  const diskPort = freePort();
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort)),
    upstreamPort,
    1,
  );
  const answer = await (await fetch(`http://127.0.0.1:${upstreamPort}/v1/chat/completions`, {
    method: "POST",
    body: CHAT,
  }))
    .text();
  const bare = await spawn(denoArgs("bench/lib/bare_server.ts", String(barePort), answer), barePort, 0);
  const flags = ["--ollama", `http://127.0.0.1:${upstreamPort}`, "--enable-cache"];
  const bridge = await spawn(
    denoArgs("main.ts", "--listen", `127.0.0.1:${bridgePort}`, ...flags, "--cache-dir", `${dir}/a`),
    bridgePort,
    0,
  );
  // No promotion: every hit is read from the disk tier.
  const disk = await spawn(
    denoArgs(
      "main.ts",
      "--listen",
      `127.0.0.1:${diskPort}`,
      ...flags,
      "--cache-dir",
      `${dir}/b`,
      "--cache-hot-threshold",
      "100000",
      "--cache-memory-entries",
      "16",
    ),
    diskPort,
    0,
  );
  try {
    await (await fetch(`http://127.0.0.1:${bridgePort}/v1/chat/completions`, { method: "POST", body: CHAT }))
      .text();
    for (const body of DISK_BODIES) {
      await (await fetch(`http://127.0.0.1:${diskPort}/v1/chat/completions`, { method: "POST", body }))
        .text();
    }
    await new Promise((resolve) => setTimeout(resolve, 300)); // stored
    const load = (port: number, connections: number) => chatLoad(port, connections, context.seconds, CHAT);
    await load(bridgePort, 50); // warm up, and promote the key to memory
    await load(barePort, 50);
    const rates = { bare: [] as number[], bridge: [] as number[] };
    const diskP50: number[] = [];
    const bareP50: number[] = [];
    for (let round = 0; round < context.rounds; round++) {
      rates.bare.push((await load(barePort, 50)).requestsPerSecond);
      rates.bridge.push((await load(bridgePort, 50)).requestsPerSecond);
      bareP50.push((await load(barePort, 1)).p50Ms);
      diskP50.push((await chatLoad(diskPort, 1, context.seconds, DISK_BODIES)).p50Ms);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${diskPort}/metrics`)).text();
    const diskHits = Number(/bridge_cache_requests_total\{result="HIT-DISK"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    return [
      {
        scenario: "cache",
        metric: "hit (memory), through bridge",
        value: median(rates.bridge),
        unit: "req/s",
      },
      { scenario: "cache", metric: "bare Deno.serve, same bytes", value: median(rates.bare), unit: "req/s" },
      {
        scenario: "cache",
        metric: "hit / bare Deno.serve",
        value: median(rates.bridge) / median(rates.bare),
        unit: "x",
        target: { op: ">=", value: 0.6 },
        detail: `rounds: ${rates.bridge.map((rate, i) => (rate / rates.bare[i]).toFixed(2)).join(" ")}`,
      },
      {
        scenario: "cache",
        metric: "disk-tier hit p50, 1 conn",
        value: median(diskP50),
        unit: "ms",
        target: { op: "<=", value: 0.5 },
        detail: `bare server p50 ${median(bareP50).toFixed(3)} ms; ${diskHits} disk hits`,
      },
    ];
  } finally {
    for (const proc of [bridge, disk, bare, upstream]) await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Fills a store through the disk tier, then opens it in a fresh bridge: start-up time and RSS. */
async function largeStore(entries: number): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-fill-" });
  try {
    const kv = await Deno.openKv(`${dir}/cache.kv`);
    const disk = await DiskTier.open(kv, { maxEntries: 1_000_000 });
    const body = new TextEncoder().encode(
      JSON.stringify({ choices: [{ message: { content: "x".repeat(1500) } }] }),
    );
    const start = performance.now();
    const now = Date.now();
    const writers = 16;
    await Promise.all(Array.from({ length: writers }, async (_, w) => {
      for (let i = w; i < entries; i += writers) {
        await disk.set(`key-${i}`, {
          status: 200,
          headers: [],
          body,
          storedAt: now + i,
          expiresAt: now + 3_600_000,
          tokens: 0,
        });
      }
    }));
    const fillSeconds = (performance.now() - start) / 1000;
    kv.close();
    let fileBytes = 0;
    for await (const file of Deno.readDir(dir)) fileBytes += (await Deno.stat(`${dir}/${file.name}`)).size;
    const { startupMs, rssMb } = await startup(dir);
    return [
      {
        scenario: "cache store",
        metric: `fill ${entries.toLocaleString("en")} entries`,
        value: fillSeconds,
        unit: "s",
        detail: `${Math.round(entries / fillSeconds)} entries/s, 1.5 KB answers`,
      },
      { scenario: "cache store", metric: "file size", value: fileBytes / 1024 / 1024, unit: "MiB" },
      {
        scenario: "cache store",
        metric: "start-up to /health",
        value: startupMs,
        unit: "ms",
        target: { op: "<=", value: 300 },
        detail: `deno run, warm module cache, ${entries.toLocaleString("en")} entries in the store`,
      },
      {
        scenario: "cache store",
        metric: "RSS after opening",
        value: rssMb,
        unit: "MB",
        target: { op: "<=", value: 150 },
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Time from spawning the bridge on a cache directory to its first /health answer, and its RSS then. */
export async function startup(cacheDir: string): Promise<{ startupMs: number; rssMb: number }> {
  const port = freePort();
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...denoArgs("main.ts", "--listen", `127.0.0.1:${port}`, "--enable-cache", "--cache-dir", cacheDir)
        .slice(1),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (;;) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/health`);
        await response.body?.cancel();
        if (response.ok) break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
    const startupMs = performance.now() - start;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const rss = Number(/bridge_memory_bytes\{kind="rss"\} (\d+)/.exec(metrics)?.[1] ?? NaN);
    return { startupMs, rssMb: rss / 1024 / 1024 };
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}
