/**
 * Side by side (issue 20), in one run: the floor server (bench/lib/floor_server.ts: the least a cache hit can
 * cost on this runtime), the bridge answering the same request from its memory tier, the fake upstream alone, and
 * the bridge passing the request through (no cache). Servers on core 0, the load on core 1, 32 connections; the
 * same ~2 KiB chat answer everywhere. Ratios: hit ÷ floor, passthrough ÷ direct.
 */
import { chatLoad, median } from "../lib/load.ts";
import { Servers } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "side by side" }] });

export async function sideBySide(context: BenchContext): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-side-" });
  try {
    // Declared in the block: the servers stop before their folder goes.
    await using servers = new Servers();
    const start = (script: string, ...args: string[]) => servers.start(0, script, ...args);
    const upstream = await start("tests/fake_upstream.ts", "--port", "{port}");
    const answer = await (await fetch(`http://127.0.0.1:${upstream}/v1/chat/completions`, {
      method: "POST",
      body: CHAT,
    })).text();
    const floor = await start("bench/lib/floor_server.ts", "{port}", CHAT, answer);
    const base = ["--listen", "127.0.0.1:{port}", "--ollama", `http://127.0.0.1:${upstream}`];
    const hit = await start("main.ts", ...base, "--enable-cache", "--cache-dir", dir);
    const passthrough = await start("main.ts", ...base);
    const proxy = await start("bench/lib/minimal_proxy.ts", "{port}", `http://127.0.0.1:${upstream}`);
    const load = (port: number, connections: number) => chatLoad(port, connections, context.seconds, CHAT);
    const ports = { floor, hit, direct: upstream, passthrough, proxy };
    for (const port of Object.values(ports)) await load(port, 32); // warm up; the hit is stored
    type Series = Record<keyof typeof ports, number[]>;
    const series = (): Series => ({ floor: [], hit: [], direct: [], passthrough: [], proxy: [] });
    const runs = series();
    const p50 = series();
    const p99 = series();
    for (let round = 0; round < context.rounds; round++) {
      for (const [name, port] of Object.entries(ports) as [keyof typeof ports, number][]) {
        const result = await load(port, 32);
        runs[name].push(result.requestsPerSecond);
        p99[name].push(result.p99Ms);
        p50[name].push((await load(port, 1)).p50Ms);
      }
    }
    const row = (name: keyof typeof ports, label: string): Row => ({
      scenario: "side by side",
      metric: label,
      value: median(runs[name]),
      unit: "req/s",
      detail: `p50 at 1 conn ${median(p50[name]).toFixed(3)} ms; p99 at 32 conn ${
        median(p99[name]).toFixed(2)
      } ms`,
    });
    /** `a` ÷ `b` in req/s: the medians' ratio, and each round's. */
    const ratioRow = (metric: string, a: keyof typeof ports, b: keyof typeof ports, more: string): Row => ({
      scenario: "side by side",
      metric,
      value: median(runs[a]) / median(runs[b]),
      unit: "x",
      detail: `rounds: ${runs[a].map((value, i) => (value / runs[b][i]).toFixed(2)).join(" ")}${more}`,
    });
    const addedP50 = (median(p50.passthrough) - median(p50.direct)) * 1000;
    return [
      row("floor", "floor cache server (key, Map, log line)"),
      row("hit", "bridge, memory-tier hit"),
      { ...ratioRow("hit / floor", "hit", "floor", ""), target: { op: ">=", value: 0.8 } },
      row("direct", "fake upstream direct"),
      row("proxy", "minimal Deno proxy (pooled client, log line)"),
      ratioRow("minimal proxy / direct", "proxy", "direct", "; a proxy that only forwards"),
      row("passthrough", "bridge, passthrough"),
      {
        ...ratioRow(
          "passthrough / direct",
          "passthrough",
          "direct",
          `; added p50 ${addedP50.toFixed(0)} µs (target ≤ 300)`,
        ),
        target: { op: ">=", value: 0.5 },
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
