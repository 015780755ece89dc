/**
 * Starts a real bridge on a free loopback port in front of a fresh fake upstream, with its log captured, and
 * stops both when the test is done: `await using t = await startTestBridge(["--retry-attempts", "2"])`.
 */
import { parseConfig } from "../src/config/index.ts";
import { createLogger } from "../src/observe/log.ts";
import { type RunningBridge, startBridge } from "../src/server/serve.ts";
import { FakeUpstream, type FakeUpstreamOptions } from "./fake_upstream.ts";
import { waitFor } from "./assert.ts";

export interface TestBridge extends AsyncDisposable {
  /** The bridge's base URL, such as `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly upstream: FakeUpstream;
  readonly running: RunningBridge;
  /** Every log line written so far. */
  readonly logs: string[];
  /** Resolves once no answer is still on its way into the cache (so the next identical request hits the disk). */
  cacheSettled(): Promise<void>;
  /** POSTs JSON to the bridge. */
  post(path: string, body: unknown, headers?: HeadersInit): Promise<Response>;
}

export interface TestBridgeOptions {
  upstream?: FakeUpstreamOptions;
  /** Upstream base URL to use instead of the fake's (the fake still starts). */
  upstreamUrl?: string;
  /** A fake upstream that outlives this bridge (for restarts); the test closes it. */
  sharedUpstream?: FakeUpstream;
}

export async function startTestBridge(
  flags: string[] = [],
  options: TestBridgeOptions = {},
): Promise<TestBridge> {
  const upstream = options.sharedUpstream ?? new FakeUpstream(options.upstream);
  const logs: string[] = [];
  const config = parseConfig([
    "--listen",
    "127.0.0.1:0",
    "--ollama",
    options.upstreamUrl ?? upstream.url,
    ...flags,
  ], {});
  const log = createLogger({
    format: config.logFormat,
    debug: config.debug,
    sink: { write: (text) => logs.push(...text.trimEnd().split("\n")) },
  });
  const running = await startBridge(config, { log });
  return {
    url: running.url,
    upstream,
    running,
    logs: new Proxy(logs, {
      get(target, property, receiver) {
        log.flush();
        return Reflect.get(target, property, receiver);
      },
    }),
    async cacheSettled() {
      await waitFor(() => (running.bridge.cache?.flights.size ?? 0) === 0, {
        interval: 5,
        message: "every cache flight settled",
      });
    },
    post: (path, body, headers) =>
      fetch(running.url + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    async [Symbol.asyncDispose]() {
      await running.stop();
      if (!options.sharedUpstream) await upstream.close();
    },
  };
}

/** Reads a body to its end, returning each chunk with the ms since `start` when it arrived. */
export async function readTimed(response: Response, start: number): Promise<{ text: string; at: number }[]> {
  const chunks: { text: string; at: number }[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) {
    chunks.push({ text: decoder.decode(chunk, { stream: true }), at: performance.now() - start });
  }
  return chunks;
}

/** The `data:` payloads of an SSE text, without `[DONE]`, parsed as JSON. */
export function sseData(text: string): Record<string, unknown>[] {
  return text.split("\n")
    .filter((line) => line.startsWith("data: ") && line !== "data: [DONE]")
    .map((line) => JSON.parse(line.slice(6)));
}

/** A fresh temporary directory for a cache, removed when disposed. */
export async function tempCacheDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "bridge-cache-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** Runs main.ts as a child process on a free port (for signals and crashes); resolves once it listens. */
export interface Child {
  url: string;
  process: Deno.ChildProcess;
  output: () => string;
}

/** Spawns main.ts: `spawnBridge(upstream, ...flags)`, or `spawnBridge({ env }, upstream, ...flags)`. */
export async function spawnBridge(
  first: string | { env: Record<string, string> },
  ...rest: string[]
): Promise<Child> {
  const env = typeof first === "string" ? undefined : first.env;
  const [upstream, ...flags] = typeof first === "string" ? [first, ...rest] : rest;
  const port = freePort();
  const args = [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-run",
    "main.ts",
  ];
  return await startProcess(Deno.execPath(), [...args, "-l", `127.0.0.1:${port}`, "-o", upstream, ...flags], {
    env,
    port,
  });
}

/**
 * Starts `command` (a bridge, or a wrapper around one: `sh -c "ulimit …"`, `setsid deno task start …`) with
 * its output captured, and waits for the bridge's "listening on" line.
 */
export async function startProcess(
  command: string,
  args: string[],
  { env, port }: { env?: Record<string, string>; port: number },
): Promise<Child> {
  const process = new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  process.stdout.pipeTo(new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk)) }));
  process.stderr.pipeTo(new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk)) }));
  await waitFor(() => text.includes("listening on"), {
    timeout: 20_000,
    interval: 25,
    message: "the bridge's 'listening on' line",
  }).catch(() => {
    throw new Error(`bridge did not start: ${text}`);
  });
  return { url: `http://127.0.0.1:${port}`, process, output: () => text };
}

/** A free loopback port (bound and released at once). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A test that sends POSIX signals to a child process: skipped on Windows, which has none to send. */
export function signalTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: Deno.build.os === "windows", fn });
}

/**
 * Sends raw bytes to a server over TCP, as a client that fetch would not let us be (wrong framing, huge
 * declared lengths, dot segments), and returns what came back: until the connection closed, a whole response
 * (head plus its content-length) arrived, or `readTimeoutMs` passed. Write errors after the server answered
 * and closed are expected and ignored.
 */
export async function rawHttp(
  url: string,
  ...parts: (string | Uint8Array)[]
): Promise<string> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let text = "";
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1];
      if (end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) return;
    }
  })();
  try {
    for (const part of parts) await conn.write(typeof part === "string" ? encoder.encode(part) : part);
  } catch {
    // The server answered and closed while we were still sending.
  }
  await Promise.race([reading, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  conn.close();
  return text;
}
