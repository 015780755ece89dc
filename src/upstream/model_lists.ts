/**
 * `GET /v1/models` and `GET /api/tags` with routes: one list of what every pool serves, each model once. The
 * default pool's answer is what the client gets when no pool answers with a list; a route pool that fails is
 * left out of the list (and logged).
 */
import { asBridgeError, UpstreamUnreachable } from "../core/errors.ts";
import type { ProxyRequest } from "../core/request.ts";
import type { Logger } from "../observe/log.ts";
import type { UpstreamClient, UpstreamExchange } from "./client.ts";
import type { Upstreams } from "./upstreams.ts";

type Listing = Record<string, unknown>;

/** Per listing path: the field holding the entries, and the field naming each model. */
const LISTINGS: Readonly<Record<string, { readonly entries: string; readonly name: string }>> = {
  "/v1/models": { entries: "data", name: "id" },
  "/api/tags": { entries: "models", name: "name" },
};

/** Whether the request asks for a model list that must merge several pools' lists. */
export function isMergedListing(request: ProxyRequest, upstreams: Upstreams): boolean {
  return request.method === "GET" && upstreams.pools.length > 1 && Object.hasOwn(LISTINGS, request.path);
}

export async function mergedModelList(
  request: ProxyRequest,
  client: UpstreamClient,
  upstreams: Upstreams,
  log: Logger,
): Promise<UpstreamExchange> {
  const shape = LISTINGS[request.path];
  // The default pool first: its entries come first, and its answer stands in when no pool gives a list.
  const pools = [upstreams.defaultPool, ...upstreams.pools.filter((pool) => pool !== upstreams.defaultPool)];
  const outcomes = await Promise.allSettled(pools.map((pool) => client.send(request, { pool })));
  const lists: Listing[] = [];
  let unlisted: UpstreamExchange | undefined;
  for (const [index, outcome] of outcomes.entries()) {
    const exchange = outcome.status === "fulfilled" ? outcome.value : undefined;
    const listing = exchange && await readListing(exchange, shape.entries);
    if (listing) lists.push(listing);
    else {
      const why = outcome.status === "rejected"
        ? String(outcome.reason)
        : `status ${exchange?.response.status}`;
      log.warn("a pool gave no model list; it is left out of the merged one", {
        pool: pools[index].name,
        why,
      });
    }
    if (index === 0 && !listing && exchange) unlisted = exchange;
    else if (exchange) await discard(exchange);
  }
  if (!lists.length) {
    if (unlisted) return unlisted;
    const first = outcomes[0];
    throw first.status === "rejected" ? first.reason : new UpstreamUnreachable("no pool gave a model list");
  }
  if (unlisted) await discard(unlisted);
  const seen = new Set<unknown>();
  const entries = lists.flatMap((listing) => listing[shape.entries] as unknown[]).filter((entry) => {
    const name = (entry as Listing | null)?.[shape.name] ?? JSON.stringify(entry);
    return !seen.has(name) && seen.add(name);
  });
  const body = new TextEncoder().encode(JSON.stringify({ ...lists[0], [shape.entries]: entries }));
  const response = new Response(body, { headers: { "content-type": "application/json" } });
  return { response, complete: body, failure: (error) => asBridgeError(error), release: () => {} };
}

/** Ends an exchange whose answer is not passed on: its body (if still unread) is cancelled, its deadline ended. */
async function discard(exchange: UpstreamExchange): Promise<void> {
  if (!exchange.response.bodyUsed) await exchange.response.body?.cancel().catch(() => {});
  exchange.release();
}

/** The exchange's body as a listing with an array of entries, or undefined (a failure, or not a list). */
async function readListing(exchange: UpstreamExchange, entries: string): Promise<Listing | undefined> {
  if (!exchange.response.ok) return undefined;
  try {
    const bytes = exchange.complete ?? await exchange.response.bytes();
    const json = JSON.parse(new TextDecoder().decode(bytes));
    return json && typeof json === "object" && Array.isArray(json[entries]) ? json : undefined;
  } catch {
    return undefined;
  }
}
