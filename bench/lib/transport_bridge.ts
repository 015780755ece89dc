/**
 * The bridge with a chosen upstream transport, for the transport comparison of issue 14 (bench only):
 * `transport_bridge.ts <pool|fetch|fetch-keepalive|undici> <port> <upstream>`. `fetch` is the bridge's fetch
 * transport (no kept-alive connection for a POST, so a written POST is never sent twice); `fetch-keepalive` is
 * Deno's fetch with its default pool (fast, but it re-sends such a POST); `undici` is undici's Pool from npm.
 */
import { Readable } from "node:stream";
import { Pool } from "undici";
import { parseConfig } from "../../src/config/index.ts";
import { createLogger } from "../../src/observe/log.ts";
import { startBridge } from "../../src/server/serve.ts";
import { clientResponseHeaders, upstreamRequestHeaders } from "../../src/upstream/headers.ts";
import type { UpstreamFetch } from "../../src/upstream/transport/index.ts";

const [kind, port, upstream] = Deno.args;

function undiciTransport(): UpstreamFetch {
  const pools = new Map<string, Pool>();
  return async (url, init) => {
    const target = new URL(url);
    let pool = pools.get(target.origin);
    if (!pool) pools.set(target.origin, pool = new Pool(target.origin, { connections: 256 }));
    const headers: Record<string, string> = {};
    upstreamRequestHeaders(init.headers).forEach((value, name) => headers[name] = value);
    const answer = await pool.request({
      path: target.pathname + target.search,
      method: init.method as "POST",
      headers,
      body: init.body ?? undefined,
      signal: init.cancellation.toSignal(),
    });
    const out = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== undefined) out.append(name, item);
      }
    }
    const body = Readable.toWeb(answer.body) as ReadableStream<Uint8Array>;
    return {
      response: new Response(body, { status: answer.statusCode, headers: clientResponseHeaders(out) }),
    };
  };
}

function keepAliveFetch(): UpstreamFetch {
  const client = Deno.createHttpClient({});
  return async (url, init) => {
    const response = await fetch(url, {
      method: init.method,
      headers: upstreamRequestHeaders(init.headers),
      body: init.body,
      signal: init.cancellation.toSignal(),
      client,
    });
    return {
      response: new Response(response.body, {
        status: response.status,
        headers: clientResponseHeaders(response.headers),
      }),
    };
  };
}

const flags = ["--listen", `127.0.0.1:${port}`, "--ollama", upstream];
const config = parseConfig(
  kind === "pool" || kind === "fetch" ? [...flags, "--upstream-client", kind] : flags,
  {},
);
const log = createLogger({ format: config.logFormat });
const fetchOverride = kind === "undici"
  ? undiciTransport()
  : kind === "fetch-keepalive"
  ? keepAliveFetch()
  : undefined;
await startBridge(config, { log, fetch: fetchOverride });
