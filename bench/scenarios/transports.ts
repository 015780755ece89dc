/**
 * Upstream transports side by side (issue 14): passthrough req/s and added p50 through a bridge using (a) the
 * pooled HTTP/1.1 client, (b) Deno's fetch as the bridge uses it (no kept-alive connection for a POST, the only
 * way it never sends a written POST twice), (c) Deno's fetch with its default keep-alive pool (faster, but it
 * re-sends such a POST: shown for reference), (d) undici's Pool. All against the fake upstream on one core,
 * the load generator on the other, rounds interleaved; medians compared.
 */
import { median, runLoad } from "../lib/load.ts";
import { denoArgs, freePort, type Proc, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const SERVER_CORE = 0;
const LOAD_CORE = 1;
const CHAT = JSON.stringify({
  model: "deepseek-r1:7b",
  messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hello." }],
});
const KINDS = ["pool", "fetch", "fetch-keepalive", "undici"] as const;

export async function transports(context: BenchContext): Promise<Row[]> {
  const upstreamPort = freePort();
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort)),
    upstreamPort,
    SERVER_CORE,
  );
  const bridges = new Map<string, { proc: Proc; url: string }>();
  try {
    for (const kind of KINDS) {
      const port = freePort();
      const args = [
        ...denoArgs("bench/lib/transport_bridge.ts", kind, String(port), `http://127.0.0.1:${upstreamPort}`),
      ];
      args.splice(2, 0, "--allow-sys"); // undici asks for the OS's details
      bridges.set(kind, {
        proc: await spawn(args, port, SERVER_CORE),
        url: `http://127.0.0.1:${port}/v1/chat/completions`,
      });
    }
    const direct = `http://127.0.0.1:${upstreamPort}/v1/chat/completions`;
    const load = (url: string, connections: number) =>
      runLoad({ url, method: "POST", body: CHAT, connections, seconds: context.seconds, core: LOAD_CORE });
    const rps: Record<string, number[]> = { direct: [] };
    const p50: Record<string, number[]> = { direct: [] };
    for (const kind of KINDS) {
      rps[kind] = [];
      p50[kind] = [];
      await load(bridges.get(kind)!.url, 32); // warm up
    }
    for (let round = 0; round < context.rounds; round++) {
      rps.direct.push((await load(direct, 32)).requestsPerSecond);
      p50.direct.push((await load(direct, 1)).p50Ms);
      for (const kind of KINDS) {
        const { url } = bridges.get(kind)!;
        const saturated = await load(url, 32);
        rps[kind].push(saturated.errors ? NaN : saturated.requestsPerSecond);
        p50[kind].push((await load(url, 1)).p50Ms);
      }
    }
    const directRps = median(rps.direct);
    const directP50 = median(p50.direct);
    const rows: Row[] = [{
      scenario: "transports",
      metric: "upstream alone",
      value: directRps,
      unit: "req/s",
      detail: `32 conn; p50 at 1 conn ${directP50.toFixed(3)} ms`,
    }];
    for (const kind of KINDS) {
      rows.push({
        scenario: "transports",
        metric: `${kind} / upstream`,
        value: median(rps[kind]) / directRps,
        unit: "x",
        detail: `${median(rps[kind]).toFixed(0)} req/s; added p50 ${
          (median(p50[kind]) - directP50).toFixed(3)
        } ms`,
      });
    }
    const bestLibrary = Math.max(median(rps.fetch), median(rps.undici));
    rows.push({
      scenario: "transports",
      metric: "pool / best library kept",
      value: median(rps.pool) / bestLibrary,
      unit: "x",
      target: { op: ">=", value: 1.3 },
      detail: "the hand-written pool stays only if clearly faster than fetch (as kept) and undici",
    });
    return rows;
  } finally {
    for (const { proc } of bridges.values()) await proc.stop();
    await upstream.stop();
  }
}
