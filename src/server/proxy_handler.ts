/**
 * The last step of the request flow: answers from the cache when it can, joins an identical request already
 * on its way upstream, or sends the request upstream (recording the answer for the cache).
 */
import type { Handler } from "hono";
import { asyncGate } from "../async/gate.ts";
import type { AsyncJobs } from "../async/jobs.ts";
import type { CacheService } from "../cache/service.ts";
import { NotFound } from "../core/errors.ts";
import { isProxiedPath } from "../core/endpoints.ts";
import { completeBody } from "../upstream/transport/index.ts";
import { streamFormat } from "../stream/format.ts";
import { type Answer, respond, type RespondOptions } from "./respond.ts";
import type { UpstreamClient, UpstreamExchange } from "../upstream/client.ts";

export interface ProxyHandlerOptions extends RespondOptions {
  upstream: UpstreamClient;
  /** Undefined unless `--enable-async-request`. */
  jobs?: AsyncJobs;
  /** Undefined when the cache is off. */
  cache?: CacheService;
}

export const proxyHandler = (options: ProxyHandlerOptions): Handler =>
  async function proxy(c) {
    const request = c.get("proxyRequest");
    const trace = c.get("trace");
    // A plugin may have moved the request outside what the bridge proxies.
    if (!isProxiedPath(request.path)) throw new NotFound(request.method, request.path);
    if (options.jobs) {
      const job = await asyncGate(options.jobs, request);
      if (job instanceof Response) return job;
      if (job) return respond(job, request, trace, options);
    }
    const { cache } = options;
    const lookup = cache?.prepare(request);
    if (!cache || !lookup) {
      if (cache) trace.notes.cache = "BYPASS";
      const exchange = await options.upstream.send(request);
      trace.upstreamStatus = exchange.response.status;
      const answer = fromExchange(exchange);
      if (cache) answer.headers.set("x-cache", "BYPASS");
      return respond(answer, request, trace, options);
    }
    const { key, noCache, noStore } = lookup;
    const answer = await cache.answer(key, { noCache, noStore }, () => options.upstream.send(request), trace);
    return respond(answer, request, trace, options);
  };

function fromExchange(exchange: UpstreamExchange): Answer {
  const { response } = exchange;
  return {
    status: response.status,
    headers: response.headers,
    format: streamFormat(response.headers.get("content-type")),
    body: response.body,
    complete: completeBody(response),
    failure: exchange.failure,
    release: exchange.release,
  };
}
