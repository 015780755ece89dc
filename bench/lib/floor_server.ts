/**
 * The floor any cache hit must pay (issue 20): a minimal cache server on Deno that does only what a hit needs —
 * read the body, parse it (the exact-number rule included), key it as the bridge does (canonical form, method,
 * path, the credential's hash, SHA-256), look the key up in a Map, answer the stored bytes, and write one
 * access-log line as the bridge does at info. `deno run -A bench/lib/floor_server.ts <port> <body> <answer>`:
 * the answer is stored under the key of `body` at start. With a fourth argument `hit-headers`, a hit also
 * carries the two headers every bridge hit carries, `X-Cache` and `Age` (what they cost on this runtime).
 */
import { cacheKey } from "../../src/cache/key.ts";
import { parseJsonBody } from "../../src/core/json_body.ts";
import { credentialTenant, type ProxyRequest } from "../../src/core/request.ts";
import { createLogger } from "../../src/observe/log.ts";

const [port, body, answer, mode] = Deno.args;
const hitHeaders = mode === "hit-headers";
const log = createLogger({ format: "text" });
const stored = new Map<string, Uint8Array<ArrayBuffer>>();
const headers = [["content-type", "application/json"]] as [string, string][];

/** The key of a request as the bridge computes it. */
function keyOf(method: string, path: string, bytes: Uint8Array, requestHeaders: Headers): string {
  const { json, inexactNumbers } = parseJsonBody(bytes);
  const request = { method, path, body: bytes, json, inexactNumbers } as unknown as ProxyRequest;
  return cacheKey(request, credentialTenant(requestHeaders) ?? "");
}

stored.set(
  keyOf("POST", "/v1/chat/completions", new TextEncoder().encode(body), new Headers()),
  new TextEncoder().encode(answer),
);

Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen() {} }, async (request) => {
  const startedAt = performance.now();
  const path = new URL(request.url).pathname;
  const bytes = new Uint8Array(await request.arrayBuffer());
  const hit = stored.get(keyOf(request.method, path, bytes, request.headers));
  const response = hit
    ? new Response(hit, { headers })
    : new Response('{"error":"miss"}', { status: 404, headers });
  if (hit && hitHeaders) {
    response.headers.append("x-cache", "HIT-MEMORY");
    response.headers.append("age", "0");
  }
  log.info(`${request.method} ${path}`, {
    status: response.status,
    ms: Math.round((performance.now() - startedAt) * 10) / 10,
    cache: hit ? "HIT-MEMORY" : "MISS",
  });
  return response;
});
