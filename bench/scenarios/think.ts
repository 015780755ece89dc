/**
 * Think filter (issue 4): raw filter throughput on a 1 MiB answer fed in 8-byte deltas, and, through two
 * bridges in front of one upstream (filter on and off), the time to the first visible token and the cost per
 * streamed chunk.
 */
import { ThinkFilter } from "../../src/filter/think.ts";
import { median } from "../lib/load.ts";
import { denoArgs, freePort, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const ANSWER_MARK = "ANSWER";

export async function think(context: BenchContext): Promise<Row[]> {
  return [throughput(), ...await streaming(context)];
}

function throughput(): Row {
  const block = "<think>" + "reasoning about the question; ".repeat(200) + "</think>\n\n";
  const answer = "The answer, with `<code>` and a < sign, goes on and on. ".repeat(400);
  let text = "";
  while (text.length < 1024 * 1024) text += block + answer;
  const samples: number[] = [];
  for (let round = 0; round < 5; round++) {
    const filter = new ThinkFilter();
    const start = performance.now();
    for (let i = 0; i < text.length; i += 8) filter.push(text.slice(i, i + 8));
    filter.end();
    samples.push(performance.now() - start);
  }
  const mb = text.length / (1024 * 1024);
  return {
    scenario: "think filter",
    metric: "throughput, 8-byte deltas",
    value: mb / (median(samples) / 1000),
    unit: "MB/s",
    detail: `${mb.toFixed(1)} MiB in ${median(samples).toFixed(0)} ms`,
  };
}

async function streaming(context: BenchContext): Promise<Row[]> {
  const upstreamPort = freePort();
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort), "--think-demo", ANSWER_MARK),
    upstreamPort,
  );
  const ports = { on: freePort(), off: freePort() };
  const base = ["--ollama", `http://127.0.0.1:${upstreamPort}`, "--keepalive-interval", "0"];
  const on = await spawn(denoArgs("main.ts", "--listen", `127.0.0.1:${ports.on}`, ...base), ports.on);
  const off = await spawn(
    denoArgs("main.ts", "--listen", `127.0.0.1:${ports.off}`, "--disable-think-filter", ...base),
    ports.off,
  );
  try {
    const samples = { on: [] as Timing[], off: [] as Timing[] };
    const runs = Math.max(10, Math.ceil(context.ttfbSamples / 5));
    for (let i = 0; i < runs + 3; i++) {
      for (const which of ["off", "on"] as const) {
        const timing = await timeStream(`http://127.0.0.1:${ports[which]}/v1/chat/completions`);
        if (i >= 3) samples[which].push(timing); // the first runs warm up the JIT
      }
    }
    const firstVisible = (which: "on" | "off") =>
      median(samples[which].map((timing) => timing.firstVisibleMs));
    const total = (which: "on" | "off") => median(samples[which].map((timing) => timing.totalMs));
    const chunks = median(samples.on.map((timing) => timing.chunks));
    return [
      {
        scenario: "think filter",
        metric: "first visible token, filter on - off",
        value: firstVisible("on") - firstVisible("off"),
        unit: "ms",
        detail: `${firstVisible("off").toFixed(3)} -> ${firstVisible("on").toFixed(3)} ms`,
      },
      {
        scenario: "think filter",
        metric: "added per streamed chunk",
        value: (total("on") - total("off")) / chunks,
        unit: "ms",
        target: { op: "<=", value: 0.2 },
        detail: `${chunks} chunks: ${total("off").toFixed(2)} -> ${total("on").toFixed(2)} ms`,
      },
    ];
  } finally {
    await on.stop();
    await off.stop();
    await upstream.stop();
  }
}

interface Timing {
  firstVisibleMs: number;
  totalMs: number;
  chunks: number;
}

async function timeStream(url: string): Promise<Timing> {
  const start = performance.now();
  const response = await fetch(url, {
    method: "POST",
    body: JSON.stringify({
      model: "deepseek-r1:7b",
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    }),
  });
  const decoder = new TextDecoder();
  let firstVisibleMs = NaN;
  let chunks = 0;
  let content = "";
  let raw = "";
  for await (const chunk of response.body!) {
    chunks++;
    if (!Number.isNaN(firstVisibleMs)) continue;
    // The mark may be split over several events, and an event over several chunks: look in the answer text
    // of the complete lines received so far.
    raw += decoder.decode(chunk, { stream: true });
    const lines = raw.split("\n");
    raw = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("data: {")) content += JSON.parse(line.slice(6)).choices[0]?.delta?.content ?? "";
    }
    if (content.includes(ANSWER_MARK)) firstVisibleMs = performance.now() - start;
  }
  return { firstVisibleMs, totalMs: performance.now() - start, chunks };
}
