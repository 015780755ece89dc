/**
 * Passthrough cost (issue 2): the fake upstream alone vs the bridge in front of it, both on one core and the
 * load generator on the other. Rounds alternate direct and proxied runs, and medians are compared, because
 * this machine is shared and noisy; CPU time per request is the steadiest of the figures.
 */
import { median, medianFirstByteMs, runLoad } from "../lib/load.ts";
import { denoArgs, freePort, type Proc, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";

export interface BenchContext {
  rounds: number;
  seconds: number;
  ttfbSamples: number;
}

const SERVER_CORE = 0;
const LOAD_CORE = 1;
const CHAT = JSON.stringify({
  model: "deepseek-r1:7b",
  messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hello." }],
  temperature: 0.2,
});
const CHAT_STREAM = JSON.stringify({ ...JSON.parse(CHAT), stream: true });

export async function passthrough(context: BenchContext): Promise<Row[]> {
  const upstreamPort = freePort();
  const bridgePort = freePort();
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort)),
    upstreamPort,
    SERVER_CORE,
  );
  const bridge = await spawn(
    denoArgs(
      "main.ts",
      "--listen",
      `127.0.0.1:${bridgePort}`,
      "--ollama",
      `http://127.0.0.1:${upstreamPort}`,
    ),
    bridgePort,
    SERVER_CORE,
  );
  const direct = `http://127.0.0.1:${upstreamPort}/v1/chat/completions`;
  const proxied = `http://127.0.0.1:${bridgePort}/v1/chat/completions`;
  try {
    const load = (url: string, connections: number) =>
      runLoad({ url, method: "POST", body: CHAT, connections, seconds: context.seconds, core: LOAD_CORE });
    const cpuPerRequest = async (proc: Proc, url: string) => {
      const before = proc.cpuMs();
      const result = await load(url, 50);
      return { result, cpuUs: ((proc.cpuMs() - before) * 1000) / result.requests };
    };
    // Warm both paths (JIT, connection pool) before measuring.
    await load(direct, 50);
    await load(proxied, 50);

    const saturated = {
      direct: [] as number[],
      proxied: [] as number[],
      upstreamCpu: [] as number[],
      bridgeCpu: [] as number[],
    };
    const idle = { direct: [] as number[], proxied: [] as number[] };
    const ttfb = { direct: [] as number[], proxied: [] as number[] };
    for (let round = 0; round < context.rounds; round++) {
      const directRun = await cpuPerRequest(upstream, direct);
      saturated.direct.push(directRun.result.requestsPerSecond);
      saturated.upstreamCpu.push(directRun.cpuUs);
      const proxiedRun = await cpuPerRequest(bridge, proxied);
      saturated.proxied.push(proxiedRun.result.requestsPerSecond);
      saturated.bridgeCpu.push(proxiedRun.cpuUs);
      idle.direct.push((await load(direct, 1)).p50Ms);
      idle.proxied.push((await load(proxied, 1)).p50Ms);
      const samples = Math.ceil(context.ttfbSamples / context.rounds);
      ttfb.direct.push(await medianFirstByteMs(direct, CHAT_STREAM, samples));
      ttfb.proxied.push(await medianFirstByteMs(proxied, CHAT_STREAM, samples));
    }
    const directRps = median(saturated.direct);
    const proxiedRps = median(saturated.proxied);
    return [
      {
        scenario: "passthrough",
        metric: "upstream alone",
        value: directRps,
        unit: "req/s",
        detail: "POST chat, 50 conn",
      },
      {
        scenario: "passthrough",
        metric: "through bridge",
        value: proxiedRps,
        unit: "req/s",
        detail: "same core as upstream",
      },
      {
        scenario: "passthrough",
        metric: "bridge / upstream",
        value: proxiedRps / directRps,
        unit: "x",
        target: { op: ">=", value: 0.35 },
        detail: `rounds: ${
          saturated.proxied.map((rps, i) => (rps / saturated.direct[i]).toFixed(2)).join(" ")
        }`,
      },
      {
        scenario: "passthrough",
        metric: "CPU per request",
        value: median(saturated.bridgeCpu),
        unit: "µs",
        detail: `upstream's own: ${median(saturated.upstreamCpu).toFixed(0)} µs`,
      },
      {
        scenario: "passthrough",
        metric: "added p50 latency",
        value: median(idle.proxied) - median(idle.direct),
        unit: "ms",
        target: { op: "<=", value: 0.5 },
        detail: `1 conn: ${median(idle.direct).toFixed(3)} -> ${median(idle.proxied).toFixed(3)} ms`,
      },
      {
        scenario: "passthrough",
        metric: "added stream TTFB",
        value: median(ttfb.proxied) - median(ttfb.direct),
        unit: "ms",
        target: { op: "<=", value: 0.5 },
        detail: `${median(ttfb.direct).toFixed(3)} -> ${median(ttfb.proxied).toFixed(3)} ms`,
      },
    ];
  } finally {
    await bridge.stop();
    await upstream.stop();
  }
}
