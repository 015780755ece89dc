/**
 * The proxy steps, in the order of DESIGN §3, each taking what it needs and returning what it makes: access key,
 * request reading, the plugin's request hook; then the handler (proxy_handler.ts): async gate, cache and
 * coalescing, upstream; the think filter and response hook on the way out. Without a plugin only /v1 and /api
 * are proxied; the plugin's request hook sees every other path too (the original's example blocks GET /blocked),
 * and what it leaves outside /v1 and /api is then a 404.
 */
import { NotFound } from "../core/errors.ts";
import { isProxiedPath } from "../core/endpoints.ts";
import type { ProxyRequest } from "../core/request.ts";
import { Cancellation, schedule, type Timer } from "../core/time.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import type { PluginHooks } from "../plugin/hooks.ts";
import type { AccessKeys } from "../upstream/keys.ts";
import { authenticate } from "./authenticate.ts";
import type { Answered } from "./delivery.ts";
import { readRequest, type ReadRequestOptions } from "./read_request.ts";

/** How long a request waits before the bridge starts watching for its client to leave. */
const CLIENT_WATCH_DELAY_MS = 200;

export interface ProxyFlowParts {
  metrics: BridgeMetrics;
  /** The clients' access keys, when they are required. */
  access?: AccessKeys;
  read: ReadRequestOptions;
  plugin?: PluginHooks;
  /** The last step: who answers. */
  proxy(request: ProxyRequest): Promise<Answered>;
}

export function proxyFlow(parts: ProxyFlowParts): (raw: Request, path: string) => Promise<Answered> {
  const { metrics, access, plugin, proxy } = parts;
  return async function proxied(raw, path) {
    if (!plugin && !isProxiedPath(path)) throw new NotFound(raw.method, path);
    const tenant = access ? authenticate(access, metrics, raw.headers) : undefined;
    // Watching raw.signal costs ~10 µs a request in Deno.serve, so it starts only for a request something waits
    // on (the upstream, a queue, a rate limit: they listen to its cancellation), CLIENT_WATCH_DELAY_MS after the
    // wait began: a client that left is noticed then, at the latest. A cache hit never starts it. (Streams notice
    // a departed client at once, through the cancelled body.)
    let watch: Timer | undefined;
    const cancellation = new Cancellation(() => {
      watch = schedule(CLIENT_WATCH_DELAY_MS, () => cancellation.follow(raw.signal));
    });
    const read = await readRequest(raw, path, tenant, cancellation, parts.read);
    try {
      const request = plugin ? await plugin.request(read) : read;
      if (request instanceof Response) return { response: request };
      return await proxy(request);
    } finally {
      watch?.cancel();
    }
  };
}
