/**
 * Turns an answer — live from the upstream, read from a flight, or replayed from the cache — into the client's
 * response: the think filter on successful answers, streams relayed chunk by chunk with honest endings, whole
 * bodies sent whole.
 */
import { type Answer, headerValue, responseWith, setHeader } from "../core/answer.ts";
import type { ThinkSettings } from "../config/index.ts";
import { type AnswerFilter, answerFilter, mayHoldThinkTag } from "../filter/think_answer.ts";
import type { Lifecycle } from "./lifecycle.ts";
import { type BridgeMetrics, routeLabel } from "../observe/metrics.ts";
import type { Answered, Delivery, Sent } from "./delivery.ts";
import { UpstreamProtocolError } from "../core/errors.ts";
import { schedule, type Timer } from "../core/time.ts";
import { looksLikeSse } from "../stream/format.ts";
import { relay } from "../stream/relay.ts";
import { readWhole } from "../upstream/transport/decode.ts";
import type { PluginHooks } from "../plugin/hooks.ts";
import type { ProxyRequest } from "../core/request.ts";

/** Statuses whose response has no body (the Fetch standard's null body statuses, 101 and 103 never reach here). */
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const EMPTY = new Uint8Array(0);

export interface RespondOptions {
  /** The most a whole body read into memory (to filter it) may hold: `--max-response-size`. */
  maxResponseBytes: number;
  lifecycle: Lifecycle;
  metrics: BridgeMetrics;
  keepaliveIntervalMs: number;
  think?: ThinkSettings;
  /** The Lua plugin, whose response hook sees every answer going out. */
  plugin?: PluginHooks;
}

/** The client's response, and what the access log is told of the delivery. */
export interface Responded extends Answered {
  readonly delivery: Delivery;
}

export async function respond(
  answer: Answer,
  request: ProxyRequest,
  options: RespondOptions,
): Promise<Responded> {
  const delivered = (response: Response, sent: Sent | Promise<Sent>): Responded => ({
    response,
    delivery: {
      cache: answer.cache,
      upstreamStatus: answer.upstreamStatus,
      queuedMs: answer.queuedMs,
      sent,
    },
  });
  const { status, headers, format } = answer;
  if (NULL_BODY_STATUSES.has(status)) {
    // 204, 304 (and a HEAD's answer, which arrives empty): no body, whatever the answer carried.
    answer.release();
    if (answer.body instanceof ReadableStream) answer.body.cancel().catch(() => {});
    return delivered(await finish(responseWith(null, { status }, headers), EMPTY, options), { bytes: 0 });
  }
  if (format === "sse" && answer.complete?.length && !looksLikeSse(answer.complete)) {
    answer.release();
    throw malformedSse(answer.complete);
  }
  // The think filter applies to successful answers; one is built only for a body that may need it.
  const think = status >= 200 && status < 300 ? options.think : undefined;
  const filterFor = () => think && answerFilter(request.kind, request.json, think);
  const countBlocks = (filter: AnswerFilter | undefined) =>
    filter?.blocksRemoved && options.metrics.thinkBlocks.inc(filter.blocksRemoved);

  if (answer.complete && (!think || !mayHoldThinkTag(answer.complete, think))) {
    // Nothing to filter in a body already in memory: send it as it is, no copy, no new response.
    answer.release();
    const response = await finish(
      responseWith(answer.complete, { status }, headers),
      answer.complete,
      options,
    );
    return delivered(response, { bytes: answer.complete.length });
  }
  if (!(answer.body instanceof ReadableStream) || (!format && isJson(headerValue(headers, "content-type")))) {
    let body: Uint8Array<ArrayBuffer> | null;
    try {
      body = answer.complete ??
        (answer.body instanceof ReadableStream
          ? await readWhole(answer.body, [], options.maxResponseBytes)
          : answer.body);
    } catch (error) {
      throw answer.failure(error);
    } finally {
      answer.release();
    }
    const filter = body && think && mayHoldThinkTag(body, think) ? filterFor() : undefined;
    if (body && filter) {
      body = filter.body(body);
      countBlocks(filter);
    }
    const response = await finish(responseWith(body, { status }, headers), body, options);
    return delivered(response, { bytes: body?.byteLength ?? 0 });
  }

  if (format) {
    setHeader(headers, "cache-control", "no-cache");
    setHeader(headers, "x-accel-buffering", "no");
  }
  const filter = filterFor();
  const reader = answer.body.getReader();
  const firstRead = format === "sse"
    ? (await checkedStart(reader, answer, options.keepaliveIntervalMs)).read
    : undefined;
  const route = routeLabel(request.path);
  let bytes = 0;
  let resolveSent!: (sent: Sent) => void;
  const sent = new Promise<Sent>((resolve) => resolveSent = resolve);
  const body = relay(reader, {
    format,
    firstRead,
    requireFinalEvent: answer.closeFramed,
    ndjsonKeepalive: format === "ndjson" ? ollamaKeepalive(request) : undefined,
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
      countBlocks(filter);
      if (error && error.status >= 500 && error.code !== "shutting_down") {
        options.metrics.upstreamErrors.inc();
      }
      resolveSent({ bytes, stream: outcome, error: error?.code });
    },
  });
  return delivered(await finish(responseWith(body, { status }, headers), null, options), sent);
}

const decoder = new TextDecoder();

/**
 * Looks at an event stream's first chunk before any header goes out (waiting at most `waitMs`, the keep-alive
 * interval, so a model that is slow to start still gets its keep-alives): bytes that are not SSE (a JSON error
 * or an HTML page sent as `text/event-stream`) are a 502 with a clear message, not an empty 200. Returns the
 * read, for the relay to go on from.
 */
async function checkedStart(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  answer: Answer,
  waitMs: number,
): Promise<{ read: Promise<ReadableStreamReadResult<Uint8Array>> }> {
  const read = reader.read();
  let timer: Timer | undefined;
  const first = await Promise.race([
    read.then((step) => step, () => undefined),
    ...(waitMs > 0
      ? [new Promise<undefined>((resolve) => timer = schedule(waitMs, () => resolve(undefined)))]
      : []),
  ]);
  timer?.cancel();
  if (first && !first.done && !looksLikeSse(first.value)) {
    reader.cancel().catch(() => {});
    answer.release();
    throw malformedSse(first.value);
  }
  return { read };
}

const encoder = new TextEncoder();

/**
 * NDJSON has no comment lines, and an empty line breaks clients that parse every line (the Python `ollama`
 * client runs json.loads on each; ollama-js warns): for Ollama's chat and generate streams the keep-alive is a
 * message with empty content and `done: false`, which every client reads as nothing new. Other NDJSON streams
 * (pull, push, create) report progress themselves and get none.
 */
function ollamaKeepalive(request: ProxyRequest): (() => Uint8Array) | undefined {
  const model = typeof request.json?.model === "string" ? request.json.model : "";
  if (request.kind === "ollama-chat") {
    return () =>
      encoder.encode(
        `${
          JSON.stringify({
            model,
            created_at: new Date().toISOString(),
            message: { role: "assistant", content: "" },
            done: false,
          })
        }\n`,
      );
  }
  if (request.kind === "ollama-generate") {
    return () =>
      encoder.encode(
        `${JSON.stringify({ model, created_at: new Date().toISOString(), response: "", done: false })}\n`,
      );
  }
  return undefined;
}

function malformedSse(first: Uint8Array): UpstreamProtocolError {
  const start = decoder.decode(first.subarray(0, 80)).replace(/\s+/g, " ");
  return new UpstreamProtocolError(`its event stream is malformed: it starts with '${start}'`);
}

/** The last step: the plugin's response hook, if there is one (a stream's body is not shown to it). */
function finish(
  response: Response,
  body: Uint8Array | null,
  options: RespondOptions,
): Response | Promise<Response> {
  if (!options.plugin) return response;
  const streamed = response.body !== null && body === null;
  return options.plugin.response(response, streamed ? null : body ?? EMPTY);
}

function isJson(contentType: string | null): boolean {
  return contentType !== null && /^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType);
}
