/**
 * The cost of the concurrency cap when it is not saturated (issue 18): the same passthrough with and without
 * `--max-inflight` (set far above the load), at one connection (added p50) and 32 (CPU per request). Rounds
 * interleaved; medians compared.
 */
import { median, runLoad } from "../lib/load.ts";
import { denoArgs, freePort, type Proc, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const SERVER_CORE = 0;
const LOAD_CORE = 1;
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "Say hello." }] });

export async function fairShare(context: BenchContext): Promise<Row[]> {
  const upstreamPort = freePort();
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort)),
    upstreamPort,
    SERVER_CORE,
  );
  const bridges: Record<string, { proc: Proc; url: string }> = {};
  try {
    for (const [name, flags] of [["uncapped", []], ["capped", ["--max-inflight", "10000"]]] as const) {
      const port = freePort();
      const args = denoArgs(
        "main.ts",
        "-l",
        `127.0.0.1:${port}`,
        "-o",
        `http://127.0.0.1:${upstreamPort}`,
        ...flags,
      );
      bridges[name] = {
        proc: await spawn(args, port, SERVER_CORE),
        url: `http://127.0.0.1:${port}/v1/chat/completions`,
      };
    }
    const load = (url: string, connections: number) =>
      runLoad({ url, method: "POST", body: CHAT, connections, seconds: context.seconds, core: LOAD_CORE });
    const p50: Record<string, number[]> = { uncapped: [], capped: [] };
    const cpu: Record<string, number[]> = { uncapped: [], capped: [] };
    for (const { url } of Object.values(bridges)) await load(url, 32);
    for (let round = 0; round < context.rounds; round++) {
      for (const [name, { proc, url }] of Object.entries(bridges)) {
        p50[name].push((await load(url, 1)).p50Ms);
        const before = proc.cpuMs();
        const result = await load(url, 32);
        cpu[name].push(((proc.cpuMs() - before) * 1000) / result.requests);
      }
    }
    const addedP50Us = (median(p50.capped) - median(p50.uncapped)) * 1000;
    return [
      {
        scenario: "fair share",
        metric: "added p50 of the cap",
        value: addedP50Us,
        unit: "µs",
        target: { op: "<=", value: 20 },
        detail: `1 conn: ${median(p50.uncapped).toFixed(3)} -> ${median(p50.capped).toFixed(3)} ms`,
      },
      {
        scenario: "fair share",
        metric: "added CPU per request",
        value: median(cpu.capped) - median(cpu.uncapped),
        unit: "µs",
        detail: `${median(cpu.uncapped).toFixed(1)} -> ${median(cpu.capped).toFixed(1)} µs at 32 conn`,
      },
    ];
  } finally {
    for (const { proc } of Object.values(bridges)) await proc.stop();
    await upstream.stop();
  }
}
