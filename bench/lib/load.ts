/**
 * Load generation: wrk (Debian package `wrk`) when installed, which saturates the server rather than itself;
 * otherwise a simple Deno client, much slower, whose figures then say more about the client than the server.
 */
import { commandExists, hasTaskset } from "./procs.ts";

export interface LoadResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export interface LoadOptions {
  url: string;
  method?: string;
  body?: string;
  /** Bodies to send in turn (wrk only), instead of `body`. */
  bodies?: string[];
  connections: number;
  seconds: number;
  /** Core to pin the load generator to. */
  core?: number;
}

export const hasWrk = await commandExists("wrk");

export function loadGenerator(): string {
  return hasWrk ? "wrk" : "built-in Deno client (install wrk for meaningful figures: apt-get install wrk)";
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return hasWrk ? runWrk(options) : runDenoLoad(options);
}

/**
 * The scenarios' usual load: POSTs to the chat endpoint of the server on `port`, of `body` (or of each of several
 * bodies in turn), from core 1 (the servers are on core 0).
 */
export function chatLoad(
  port: number,
  connections: number,
  seconds: number,
  body: string | string[],
): Promise<LoadResult> {
  return runLoad({
    url: `http://127.0.0.1:${port}/v1/chat/completions`,
    method: "POST",
    ...(typeof body === "string" ? { body } : { bodies: body }),
    connections,
    seconds,
    core: 1,
  });
}

async function runWrk(options: LoadOptions): Promise<LoadResult> {
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(
    script,
    `wrk.method = ${JSON.stringify(options.method ?? "GET")}\n` +
      `wrk.headers["Content-Type"] = "application/json"\n` +
      (options.body ? `wrk.body = ${JSON.stringify(options.body)}\n` : "") +
      (options.bodies
        ? `local bodies = {${options.bodies.map((body) => JSON.stringify(body)).join(",")}}\nlocal n = 0\n` +
          "request = function()\n  n = n % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[n])\nend\n"
        : ""),
  );
  const args = [
    "-t1",
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    "--latency",
    "-s",
    script,
    options.url,
  ];
  const command = options.core !== undefined && hasTaskset ? "taskset" : "wrk";
  const fullArgs = command === "taskset" ? ["-c", String(options.core), "wrk", ...args] : args;
  const output = await new Deno.Command(command, { args: fullArgs, stdout: "piped", stderr: "piped" })
    .output();
  await Deno.remove(script);
  const text = new TextDecoder().decode(output.stdout);
  const number = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  const latency = (label: string) => {
    const match = new RegExp(`${label}%\\s+([\\d.]+)(us|ms|s)`).exec(text);
    if (!match) return NaN;
    const scale = match[2] === "us" ? 0.001 : match[2] === "s" ? 1000 : 1;
    return Number(match[1]) * scale;
  };
  const errors = number(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return {
    requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/),
    requests: number(/(\d+) requests in/),
    p50Ms: latency("50"),
    p99Ms: latency("99"),
    errors: errors + (number(/Socket errors: connect (\d+)/) || 0),
  };
}

async function runDenoLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + options.seconds * 1000;
  await Promise.all(Array.from({ length: options.connections }, async () => {
    while (performance.now() < end) {
      const start = performance.now();
      try {
        const response = await fetch(options.url, { method: options.method ?? "GET", body: options.body });
        await response.arrayBuffer();
        if (!response.ok) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - start);
    }
  }));
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: latencies.length / options.seconds,
    requests: latencies.length,
    p50Ms: latencies[Math.floor(latencies.length * 0.5)],
    p99Ms: latencies[Math.floor(latencies.length * 0.99)],
    errors,
  };
}

/** Milliseconds to the first body byte of `count` sequential streamed requests: their median. */
export async function medianFirstByteMs(url: string, body: string, count: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    });
    const reader = response.body!.getReader();
    await reader.read();
    samples.push(performance.now() - start);
    await reader.cancel();
  }
  return median(samples);
}

export function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN;
}
