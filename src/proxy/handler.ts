/**
 * The last step of the request flow: sends the request upstream and answers the client with what came back.
 * A JSON answer is read whole (it is small, and later steps need all of it); anything else, event streams
 * above all, is relayed chunk by chunk as it arrives.
 */
import type { Handler } from "hono";
import type { Lifecycle } from "../lifecycle.ts";
import { type BridgeMetrics, routeLabel } from "../metrics.ts";
import { streamFormat } from "../stream/format.ts";
import { relay, type RelayOutcome } from "../stream/relay.ts";
import { answerFilter, type ThinkSettings } from "../filter/think_answer.ts";
import { completeBodySize } from "../transport/index.ts";
import type { UpstreamClient } from "./upstream.ts";

export interface ProxyHandlerOptions {
  upstream: UpstreamClient;
  lifecycle: Lifecycle;
  metrics: BridgeMetrics;
  keepaliveIntervalMs: number;
  /** The think filter's settings; undefined turns it off. */
  think?: ThinkSettings;
}

export const proxyHandler = (options: ProxyHandlerOptions): Handler =>
  async function proxy(c) {
    const request = c.get("proxyRequest");
    const trace = c.get("trace");
    const exchange = await options.upstream.send(request);
    const { response } = exchange;
    const { status } = response;
    trace.upstreamStatus = status;
    // The transport hands back end-to-end headers only, on a response the bridge may change.
    const headers = response.headers;
    const filter = status >= 200 && status < 300 && options.think
      ? answerFilter(request.kind, request.json?.model, options.think)
      : undefined;
    const countBlocks = () => filter?.blocksRemoved && options.metrics.thinkBlocks.inc(filter.blocksRemoved);
    const contentType = headers.get("content-type");
    const format = streamFormat(contentType);
    const completeSize = completeBodySize(response);

    if (completeSize !== undefined && !filter) {
      exchange.release();
      trace.bytes = completeSize;
      return response;
    }
    if (completeSize !== undefined || !response.body || (!format && isJson(contentType))) {
      let body: Uint8Array<ArrayBuffer> | null;
      try {
        body = response.body ? await response.bytes() : null;
      } catch (error) {
        throw exchange.failure(error);
      } finally {
        exchange.release();
      }
      if (body && filter) {
        body = filter.body(body);
        countBlocks();
      }
      trace.bytes = body?.byteLength ?? 0;
      return new Response(body, { status, headers });
    }

    if (format) {
      headers.set("cache-control", "no-cache");
      headers.set("x-accel-buffering", "no");
    }
    const route = routeLabel(request.path);
    let bytes = 0;
    let resolveEnd!: (outcome: RelayOutcome) => void;
    trace.streamEnd = new Promise((resolve) => resolveEnd = resolve);
    const source = filter && format ? response.body.pipeThrough(filter.stream(format)) : response.body;
    const body = relay(source, {
      format,
      keepaliveMs: options.keepaliveIntervalMs,
      stop: options.lifecycle.deadline,
      failure: exchange.failure,
      onFirstChunk: () => {
        options.metrics.streamFirstByte.observe({ route }, (performance.now() - request.startedAt) / 1000);
      },
      onChunk: (size) => bytes += size,
      onKeepalive: () => options.metrics.keepalives.inc(),
      onEnd: (outcome, error) => {
        exchange.release();
        countBlocks();
        if (error) {
          options.metrics.upstreamErrors.inc();
          trace.notes.error = error.code;
        }
        trace.bytes = bytes;
        resolveEnd(outcome);
      },
    });
    return new Response(body, { status, headers });
  };

function isJson(contentType: string | null): boolean {
  return contentType !== null && /^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType);
}
