/**
 * The floor any passthrough must pay on this runtime (issue 20): a Deno.serve server that reads the request body,
 * sends it upstream with the bridge's own pooled HTTP/1.1 client, answers with the upstream's status, headers and
 * body, and writes one access-log line. No routing, checks, cache, filter or metrics.
 * `deno run -A bench/lib/minimal_proxy.ts <port> <upstream base URL>`.
 */
import { Cancellation } from "../../src/core/time.ts";
import { createLogger } from "../../src/observe/log.ts";
import { Http1Client } from "../../src/upstream/transport/http1.ts";

const [port, upstream] = Deno.args;
const log = createLogger({ format: "text" });
const client = new Http1Client();

Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen() {} }, async (request) => {
  const startedAt = performance.now();
  const url = new URL(request.url);
  const body = new Uint8Array(await request.arrayBuffer());
  const { response } = await client.fetch(upstream + url.pathname, {
    method: request.method,
    headers: request.headers,
    body,
    cancellation: new Cancellation(),
  });
  log.info(`${request.method} ${url.pathname}`, {
    status: response.status,
    ms: Math.round((performance.now() - startedAt) * 10) / 10,
  });
  return response;
});
