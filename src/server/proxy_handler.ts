/**
 * The last step of the request flow: answers from the cache when it can, joins an identical request already
 * on its way upstream, or sends the request upstream (recording the answer for the cache).
 */
import { asyncGate } from "../async/gate.ts";
import type { JobStore } from "../async/job_request.ts";
import type { CacheService } from "../cache/service.ts";
import { NotFound } from "../core/errors.ts";
import { isProxiedPath } from "../core/endpoints.ts";
import { streamFormat } from "../stream/format.ts";
import { type Answer, type CacheOutcome, headerPairs, setHeader } from "../core/answer.ts";
import type { ProxyRequest } from "../core/request.ts";
import { respond, type RespondOptions } from "./respond.ts";
import type { Answered } from "./delivery.ts";
import type { UpstreamClient, UpstreamExchange } from "../upstream/client.ts";
import { isMergedListing, mergedModelList } from "../upstream/model_lists.ts";
import type { Upstreams } from "../upstream/upstreams.ts";
import type { Logger } from "../observe/log.ts";

export interface ProxyHandlerOptions extends RespondOptions {
  upstream: UpstreamClient;
  /** The pools behind the client: a model list merges theirs. */
  upstreams: Upstreams;
  log: Logger;
  /** Undefined unless `--enable-async-request`. */
  jobs?: JobStore;
  /** Undefined when the cache is off. */
  cache?: CacheService;
}

/** The last step: the client's response to `request`, and how it goes out. */
export const proxyHandler = (options: ProxyHandlerOptions) =>
  async function proxy(request: ProxyRequest): Promise<Answered> {
    // A plugin may have moved the request outside what the bridge proxies.
    if (!isProxiedPath(request.path)) throw new NotFound(request.method, request.path);
    const answer = await answerFor(request, options);
    if (answer instanceof Response) return { response: answer };
    return respond(answer, request, options);
  };

/** The answer to a request: an async job's, the cache's (or a flight's), or the upstream's own. */
async function answerFor(request: ProxyRequest, options: ProxyHandlerOptions): Promise<Answer | Response> {
  if (isMergedListing(request, options.upstreams)) {
    return fromExchange(await mergedModelList(request, options.upstream, options.upstreams, options.log));
  }
  if (options.jobs) {
    const job = await asyncGate(options.jobs, request);
    if (job) return job;
  }
  const { cache } = options;
  const lookup = cache?.prepare(request);
  if (cache && lookup) {
    const { key, ...control } = lookup;
    return cache.answer(key, control, () => options.upstream.send(request));
  }
  const exchange = await options.upstream.send(request);
  return fromExchange(exchange, cache ? "BYPASS" : undefined);
}

function fromExchange(exchange: UpstreamExchange, cache?: CacheOutcome): Answer {
  const { response } = exchange;
  const headers = headerPairs(response.headers);
  if (cache) setHeader(headers, "x-cache", cache);
  return {
    status: response.status,
    headers,
    format: streamFormat(response.headers.get("content-type")),
    body: response.body,
    complete: exchange.complete,
    closeFramed: exchange.closeFramed,
    queuedMs: exchange.queuedMs,
    cache,
    upstreamStatus: response.status,
    failure: exchange.failure,
    release: exchange.release,
  };
}
