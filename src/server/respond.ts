/**
 * Turns an answer — live from the upstream, read from a flight, or replayed from the cache — into the client's
 * response: the think filter on successful answers, streams relayed chunk by chunk with honest endings, whole
 * bodies sent whole.
 */
import type { BridgeError } from "../core/errors.ts";
import { answerFilter, type ThinkSettings } from "../filter/think_answer.ts";
import type { Lifecycle } from "./lifecycle.ts";
import { type BridgeMetrics, routeLabel } from "../observe/metrics.ts";
import type { RequestTrace } from "./trace.ts";
import type { StreamFormat } from "../stream/format.ts";
import { relay, type RelayOutcome } from "../stream/relay.ts";
import type { PluginHooks } from "../plugin/hooks.ts";
import type { ProxyRequest } from "../core/request.ts";

export interface Answer {
  readonly status: number;
  /** The client's copy of the response headers; respond() may add to them. */
  readonly headers: Headers;
  readonly format?: StreamFormat;
  /** The whole body, or a stream of it still arriving. */
  readonly body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;
  /**
   * The body, when it is already in memory although `body` is a stream: it is then sent (or filtered) without
   * reading the stream.
   */
  readonly complete?: Uint8Array<ArrayBuffer>;
  /** The error to show the client for a failure while reading the body. */
  failure(error: unknown): BridgeError;
  /** Called once, when the body has been read, has failed, or was abandoned. */
  release(): void;
}

export interface RespondOptions {
  lifecycle: Lifecycle;
  metrics: BridgeMetrics;
  keepaliveIntervalMs: number;
  think?: ThinkSettings;
  /** The Lua plugin, whose response hook sees every answer going out. */
  plugin?: PluginHooks;
}

export async function respond(
  answer: Answer,
  request: ProxyRequest,
  trace: RequestTrace,
  options: RespondOptions,
): Promise<Response> {
  const { status, headers, format } = answer;
  const filter = status >= 200 && status < 300 && options.think
    ? answerFilter(request.kind, request.json?.model, options.think)
    : undefined;
  const countBlocks = () => filter?.blocksRemoved && options.metrics.thinkBlocks.inc(filter.blocksRemoved);

  if (answer.complete && (!filter || !filter.mayChange(answer.complete))) {
    // Nothing to filter in a body already in memory: send it as it is, no copy, no new response.
    answer.release();
    trace.bytes = answer.complete.length;
    return finish(new Response(answer.complete, { status, headers }), answer.complete, options);
  }
  if (!(answer.body instanceof ReadableStream) || (!format && isJson(headers.get("content-type")))) {
    let body: Uint8Array<ArrayBuffer> | null;
    try {
      body = answer.complete ??
        (answer.body instanceof ReadableStream ? await new Response(answer.body).bytes() : answer.body);
    } catch (error) {
      throw answer.failure(error);
    } finally {
      answer.release();
    }
    if (body && filter) {
      body = filter.body(body);
      countBlocks();
    }
    trace.bytes = body?.byteLength ?? 0;
    return finish(new Response(body, { status, headers }), body, options);
  }

  if (format) {
    headers.set("cache-control", "no-cache");
    headers.set("x-accel-buffering", "no");
  }
  const route = routeLabel(request.path);
  let bytes = 0;
  let resolveEnd!: (outcome: RelayOutcome) => void;
  trace.streamEnd = new Promise((resolve) => resolveEnd = resolve);
  const body = relay(answer.body, {
    format,
    map: filter && format ? filter.stream(format) : undefined,
    keepaliveMs: options.keepaliveIntervalMs,
    stop: options.lifecycle.deadline,
    failure: answer.failure,
    onFirstChunk: () => {
      options.metrics.streamFirstByte.observe({ route }, (performance.now() - request.startedAt) / 1000);
    },
    onChunk: (size) => bytes += size,
    onKeepalive: () => options.metrics.keepalives.inc(),
    onEnd: (outcome, error) => {
      answer.release();
      countBlocks();
      if (error) {
        if (error.status >= 500 && error.code !== "shutting_down") options.metrics.upstreamErrors.inc();
        trace.notes.error = error.code;
      }
      trace.bytes = bytes;
      resolveEnd(outcome);
    },
  });
  return finish(new Response(body, { status, headers }), null, options);
}

const decoder = new TextDecoder();

/** The last step: the plugin's response hook, if there is one (a stream's body is not shown to it). */
function finish(
  response: Response,
  body: Uint8Array | null,
  options: RespondOptions,
): Response | Promise<Response> {
  if (!options.plugin) return response;
  const streamed = response.body !== null && body === null;
  return options.plugin.response(response, streamed ? null : body ? decoder.decode(body) : "");
}

function isJson(contentType: string | null): boolean {
  return contentType !== null && /^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType);
}
