/**
 * Side by side (issue 20), in one run: the floor server (bench/lib/floor_server.ts: the least a cache hit can
 * cost on this runtime), the same with the two headers every hit carries, the bridge answering the same request
 * from its memory tier, the fake upstream alone, a minimal Deno proxy, and the bridge passing the request through
 * (no cache). Servers on core 0, the load on core 1, 32 connections; the same ~2 KiB chat answer everywhere.
 * Ratios: hit ÷ floor, passthrough ÷ direct. Last, a CPU profile of the bridge answering hits: its own code's
 * largest function.
 */
import { topOwnFunction } from "../lib/cpu_profile.ts";
import { chatLoad, median } from "../lib/load.ts";
import { freePort, Servers, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "side by side" }] });

export async function sideBySide(context: BenchContext): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-side-" });
  try {
    // Declared in the block: the servers stop before their folder goes.
    await using servers = new Servers();
    const start = (script: string, ...args: string[]) => servers.start(0, script, ...args);
    const upstream = await start("tests/fake_upstream.ts", "--port", "{port}", "--reply-chars", "1800");
    const answer = await (await fetch(`http://127.0.0.1:${upstream}/v1/chat/completions`, {
      method: "POST",
      body: CHAT,
    })).text();
    const floor = await start("bench/lib/floor_server.ts", "{port}", CHAT, answer);
    const floorHeaders = await start("bench/lib/floor_server.ts", "{port}", CHAT, answer, "hit-headers");
    const base = ["--listen", "127.0.0.1:{port}", "--ollama", `http://127.0.0.1:${upstream}`];
    const hit = await start("main.ts", ...base, "--enable-cache", "--cache-dir", dir);
    const passthrough = await start("main.ts", ...base);
    const proxy = await start("bench/lib/minimal_proxy.ts", "{port}", `http://127.0.0.1:${upstream}`);
    const load = (port: number, connections: number) => chatLoad(port, connections, context.seconds, CHAT);
    // A hit right after the floor in each round, so the pair sees the same moment of a shared machine.
    const ports = { floor, hit, floorHeaders, direct: upstream, passthrough, proxy };
    for (const port of Object.values(ports)) await load(port, 32); // warm up; the hit is stored
    type Series = Record<keyof typeof ports, number[]>;
    const series = (): Series => ({
      floor: [],
      floorHeaders: [],
      hit: [],
      direct: [],
      passthrough: [],
      proxy: [],
    });
    const runs = series();
    const cpuUs = series();
    const p50 = series();
    const p99 = series();
    const named = Object.entries(ports) as [keyof typeof ports, number][];
    for (let round = 0; round < context.rounds; round++) {
      for (const [name, port] of named) {
        const before = servers.cpuMs(port);
        const result = await load(port, 32);
        runs[name].push(result.requestsPerSecond);
        cpuUs[name].push(((servers.cpuMs(port) - before) * 1000) / result.requests);
        p99[name].push(result.p99Ms);
      }
    }
    for (let round = 0; round < context.rounds; round++) {
      for (const [name, port] of named) p50[name].push((await load(port, 1)).p50Ms);
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
    /**
     * `a` ÷ `b` in req/s: the median of the rounds' ratios (each round measures the two within seconds of each
     * other, so a busy neighbour slows both), with each round's ratio and the ratio of the medians.
     */
    const ratioRow = (metric: string, a: keyof typeof ports, b: keyof typeof ports, more: string): Row => {
      const rounds = runs[a].map((value, i) => value / runs[b][i]);
      return {
        scenario: "side by side",
        metric,
        value: median(rounds),
        unit: "x",
        detail: `rounds: ${rounds.map((ratio) => ratio.toFixed(2)).join(" ")}; medians' ratio ${
          (median(runs[a]) / median(runs[b])).toFixed(2)
        }${more}`,
      };
    };
    const profile = await profiledHits(dir, upstream, context.seconds);
    return [
      row("floor", `floor cache server (key, Map, log line; ${answer.length}-byte answer)`),
      row("floorHeaders", "floor + X-Cache and Age"),
      ratioRow("floor with hit headers / floor", "floorHeaders", "floor", "; the two headers alone"),
      row("hit", "bridge, memory-tier hit"),
      { ...ratioRow("hit / floor", "hit", "floor", ""), target: { op: ">=", value: 0.8 } },
      {
        scenario: "side by side",
        metric: "hit / floor in CPU per request (floor ÷ hit)",
        value: median(cpuUs.floor) / median(cpuUs.hit),
        unit: "x",
        detail: `CPU per request: floor ${median(cpuUs.floor).toFixed(1)} µs, hit ${
          median(cpuUs.hit).toFixed(1)
        } µs (steadier than req/s on a shared machine)`,
      },
      {
        scenario: "side by side",
        metric: "hit profile: largest own function",
        value: profile.share * 100,
        unit: "% busy",
        target: { op: "<=", value: 10 },
        detail: profile.name,
      },
      row("direct", "fake upstream direct"),
      row("proxy", "minimal Deno proxy (pooled client, log line)"),
      ratioRow("minimal proxy / direct", "proxy", "direct", "; a proxy that only forwards"),
      row("passthrough", "bridge, passthrough"),
      { ...ratioRow("passthrough / direct", "passthrough", "direct", ""), target: { op: ">=", value: 0.5 } },
      {
        scenario: "side by side",
        metric: "passthrough added p50, 1 connection",
        value: (median(p50.passthrough) - median(p50.direct)) * 1000,
        unit: "µs",
        target: { op: "<=", value: 300 },
        detail: `passthrough ${median(p50.passthrough).toFixed(3)} ms, direct ${
          median(p50.direct).toFixed(3)
        } ms`,
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A bridge with a warm memory tier under the same load, run with V8's CPU profiler: which function of the
 * bridge's own code (src/) took the most self time.
 */
async function profiledHits(dir: string, upstream: number, seconds: number) {
  const profiles = await Deno.makeTempDir({ dir, prefix: "profile-" });
  const port = freePort();
  const bridge = await spawn(
    [
      Deno.execPath(),
      "run",
      "-A",
      "--cpu-prof",
      `--cpu-prof-dir=${profiles}`,
      "main.ts",
      ...["--listen", `127.0.0.1:${port}`, "--ollama", `http://127.0.0.1:${upstream}`],
      ...["--enable-cache", "--cache-dir", `${dir}/profiled-cache`],
    ],
    port,
    0,
  );
  try {
    await chatLoad(port, 32, 1, CHAT); // stores the answer, warms up
    await chatLoad(port, 32, seconds, CHAT);
  } finally {
    await bridge.stop(); // a graceful stop writes the profile
  }
  const [file] = [...Deno.readDirSync(profiles)];
  return topOwnFunction(`${profiles}/${file.name}`, new URL("../../src/", import.meta.url).href);
}
