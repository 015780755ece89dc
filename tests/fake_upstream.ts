/**
 * A fake LLM server speaking OpenAI (JSON and SSE) and Ollama (JSON and NDJSON), with latency and failure
 * injection, for tests, benchmarks and the demo. It records what it received, and how each answer ended.
 *
 * Standalone: `deno run --allow-net tests/fake_upstream.ts --port 11434 [--chunk-delay 50] [--reply-chars 1800]`.
 */
import { Cancellation, sleep } from "../src/core/time.ts";

export interface Behaviour {
  /** Answer with this status and body instead of the normal answer. */
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  /** Wait this long before the response headers. */
  delayMs?: number;
  /** Wait this long between stream chunks. */
  chunkDelayMs?: number;
  /** Break the connection after this many stream chunks (no final event). */
  cutAfterChunks?: number;
  /** Close the connection without any response. */
  reset?: boolean;
  /** The answer's text (default: `reply` of the server). */
  reply?: string;
  /** Send the body gzip-compressed with `content-encoding: gzip`. */
  gzip?: boolean;
}

export interface Received {
  method: string;
  path: string;
  search: string;
  headers: Headers;
  body: string;
}

export type StreamEnd = "complete" | "cancelled" | "cut";

export interface FakeUpstreamOptions {
  port?: number;
  hostname?: string;
  /** The default answer text. */
  reply?: string;
  /** Default wait between stream chunks. */
  chunkDelayMs?: number;
  /** Default characters per stream chunk. */
  chunkSize?: number;
  /** The models its lists (`/v1/models`, `/api/tags`) name; `fake-model` by default. */
  models?: string[];
}

const encoder = new TextEncoder();

export class FakeUpstream {
  readonly received: Received[] = [];
  /** How each streamed answer ended, in order of ending. */
  readonly streamEnds: StreamEnd[] = [];
  /** How many requests the client abandoned before their answer was complete. */
  aborts = 0;
  reply: string;
  chunkDelayMs: number;
  chunkSize: number;
  readonly models: string[];
  readonly #plans: Behaviour[] = [];
  #defaultBehaviour: Behaviour = {};
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #listeners = new Set<() => void>();

  constructor(options: FakeUpstreamOptions = {}) {
    this.reply = options.reply ?? "Hello from the fake upstream.";
    this.chunkDelayMs = options.chunkDelayMs ?? 0;
    this.chunkSize = options.chunkSize ?? 8;
    this.models = options.models ?? ["fake-model"];
    this.#server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      onListen: () => {},
    }, (request) => this.#handle(request));
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  get calls(): number {
    return this.received.length;
  }

  /** The next requests get these behaviours, one each, in order. */
  plan(...behaviours: Behaviour[]): this {
    this.#plans.push(...behaviours);
    return this;
  }

  /** Every request without a planned behaviour gets this one. */
  always(behaviour: Behaviour): this {
    this.#defaultBehaviour = behaviour;
    return this;
  }

  /** Resolves once `count` streamed answers have ended. */
  async waitForStreamEnds(count: number, timeoutMs = 5000): Promise<StreamEnd[]> {
    await waitFor(() => this.streamEnds.length >= count, timeoutMs, `${count} streams to end`);
    return this.streamEnds;
  }

  /** Resolves once `count` requests were abandoned by the client. */
  waitForAborts(count: number, timeoutMs = 5000): Promise<void> {
    return waitFor(() => this.aborts >= count, timeoutMs, `${count} aborted requests`);
  }

  close(): Promise<void> {
    return this.#server.shutdown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const body = await request.text();
    request.signal.addEventListener("abort", () => this.aborts++, { once: true });
    this.received.push({
      method: request.method,
      path: url.pathname,
      search: url.search,
      headers: request.headers,
      body,
    });
    const behaviour = { ...this.#defaultBehaviour, ...this.#plans.shift() };
    if (behaviour.delayMs) {
      const waited = await sleep(behaviour.delayMs, Cancellation.fromSignal(request.signal)).then(
        () => true,
        () => false,
      );
      if (!waited) return new Response(null, { status: 499 }); // the client is gone; nobody reads this
    }
    if (behaviour.reset) return Response.error();
    if (behaviour.status !== undefined) {
      return new Response(behaviour.body ?? JSON.stringify({ error: { message: "planned failure" } }), {
        status: behaviour.status,
        headers: { "content-type": "application/json", ...behaviour.headers },
      });
    }
    if (behaviour.gzip) {
      const answer = new Blob([JSON.stringify({ object: "list", data: [{ id: "fake-model" }] })]);
      return new Response(answer.stream().pipeThrough(new CompressionStream("gzip")), {
        headers: { "content-type": "application/json", "content-encoding": "gzip" },
      });
    }
    const json = parseJson(body);
    const reply = behaviour.reply ?? this.reply;
    const answer = (dialect: Dialect, streamByDefault: boolean) => {
      const stream = typeof json.stream === "boolean" ? json.stream : streamByDefault;
      if (!stream) return Response.json(dialect.whole(reply, json), { headers: behaviour.headers });
      return this.#stream(dialect, reply, json, behaviour, request.signal);
    };
    switch (`${request.method} ${url.pathname}`) {
      case "POST /v1/chat/completions":
        return answer(openaiChat, false);
      case "POST /v1/completions":
        return answer(openaiCompletion, false);
      case "POST /api/chat":
        return answer(ollamaChat, true);
      case "POST /api/generate":
        return answer(ollamaGenerate, true);
      case "POST /v1/embeddings":
        return Response.json({
          object: "list",
          data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }],
        });
      case "POST /api/embed":
        return Response.json({ model: json.model, embeddings: [[0.1, 0.2]] });
      case "GET /v1/models":
        return Response.json({
          object: "list",
          data: this.models.map((id) => ({ id, object: "model", owned_by: "fake" })),
        });
      case "GET /api/tags":
        return Response.json({
          models: this.models.map((id) => ({ name: `${id}:latest`, model: `${id}:latest` })),
        });
      default:
        if (url.pathname.endsWith("/echo")) {
          return Response.json({
            method: request.method,
            path: url.pathname,
            search: url.search,
            headers: Object.fromEntries(request.headers),
            body,
          }, { headers: behaviour.headers });
        }
        return Response.json({ error: { message: `fake upstream has no ${url.pathname}` } }, { status: 404 });
    }
  }

  #stream(dialect: Dialect, reply: string, json: Json, behaviour: Behaviour, signal: AbortSignal): Response {
    const pieces: string[] = [];
    for (let i = 0; i < reply.length; i += this.chunkSize) pieces.push(reply.slice(i, i + this.chunkSize));
    const chunkDelay = behaviour.chunkDelayMs ?? this.chunkDelayMs;
    const ends = this.streamEnds;
    const cancellation = Cancellation.fromSignal(signal);
    let index = 0;
    let finished = false;
    const end = (how: StreamEnd) => {
      if (!finished) ends.push(how);
      finished = true;
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (index > 0 && chunkDelay) await sleep(chunkDelay, cancellation).catch(() => {});
        if (behaviour.cutAfterChunks !== undefined && index >= behaviour.cutAfterChunks) {
          end("cut");
          return controller.error(new Error("planned cut"));
        }
        if (index < pieces.length) {
          controller.enqueue(encoder.encode(dialect.chunk(pieces[index++], json, index === 1)));
        } else {
          controller.enqueue(encoder.encode(dialect.last(json)));
          end("complete");
          controller.close();
        }
      },
      cancel() {
        end("cancelled");
      },
    });
    return new Response(body, { headers: { "content-type": dialect.contentType, ...behaviour.headers } });
  }
}

type Json = Record<string, unknown>;

interface Dialect {
  contentType: string;
  whole(reply: string, request: Json): unknown;
  chunk(text: string, request: Json, first: boolean): string;
  last(request: Json): string;
}

const CREATED = 1_700_000_000;
const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`;
const line = (value: unknown) => `${JSON.stringify(value)}\n`;
const usage = { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 };

const openaiChat: Dialect = {
  contentType: "text/event-stream",
  whole: (reply, request) => ({
    id: "chatcmpl-fake",
    object: "chat.completion",
    created: CREATED,
    model: request.model ?? "fake-model",
    choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }],
    usage,
  }),
  chunk: (text, request, first) =>
    sse({
      id: "chatcmpl-fake",
      object: "chat.completion.chunk",
      created: CREATED,
      model: request.model ?? "fake-model",
      choices: [{
        index: 0,
        delta: first ? { role: "assistant", content: text } : { content: text },
        finish_reason: null,
      }],
    }),
  last: (request) =>
    sse({
      id: "chatcmpl-fake",
      object: "chat.completion.chunk",
      created: CREATED,
      model: request.model ?? "fake-model",
      choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
    }) + "data: [DONE]\n\n",
};

const openaiCompletion: Dialect = {
  contentType: "text/event-stream",
  whole: (reply, request) => ({
    id: "cmpl-fake",
    object: "text_completion",
    created: CREATED,
    model: request.model ?? "fake-model",
    choices: [{ index: 0, text: reply, finish_reason: "stop" }],
    usage,
  }),
  chunk: (text, request) =>
    sse({
      id: "cmpl-fake",
      object: "text_completion",
      created: CREATED,
      model: request.model,
      choices: [{ index: 0, text, finish_reason: null }],
    }),
  last: (request) =>
    sse({
      id: "cmpl-fake",
      object: "text_completion",
      created: CREATED,
      model: request.model,
      choices: [{ index: 0, text: "", finish_reason: "stop" }],
    }) +
    "data: [DONE]\n\n",
};

const ollamaDone = {
  done: true,
  done_reason: "stop",
  total_duration: 1000,
  prompt_eval_count: 5,
  eval_count: 7,
};
const AT = "2024-01-01T00:00:00Z";

const ollamaChat: Dialect = {
  contentType: "application/x-ndjson",
  whole: (reply, request) => ({
    model: request.model,
    created_at: AT,
    message: { role: "assistant", content: reply },
    ...ollamaDone,
  }),
  chunk: (text, request) =>
    line({
      model: request.model,
      created_at: AT,
      message: { role: "assistant", content: text },
      done: false,
    }),
  last: (request) =>
    line({
      model: request.model,
      created_at: AT,
      message: { role: "assistant", content: "" },
      ...ollamaDone,
    }),
};

const ollamaGenerate: Dialect = {
  contentType: "application/x-ndjson",
  whole: (reply, request) => ({ model: request.model, created_at: AT, response: reply, ...ollamaDone }),
  chunk: (text, request) => line({ model: request.model, created_at: AT, response: text, done: false }),
  last: (request) => line({ model: request.model, created_at: AT, response: "", ...ollamaDone }),
};

function parseJson(body: string): Json {
  try {
    const value = JSON.parse(body);
    return typeof value === "object" && value !== null ? value : {};
  } catch {
    return {};
  }
}

async function waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

if (import.meta.main) {
  const arg = (name: string, fallback: number) => {
    const index = Deno.args.indexOf(name);
    return index >= 0 ? Number(Deno.args[index + 1]) : fallback;
  };
  // --think-demo MARK: answers like a reasoning model, a think block first, then an answer starting with MARK.
  const mark = Deno.args.indexOf("--think-demo");
  // --reply-chars N: a plain answer of N characters (the benchmarks' ~2 KiB answer).
  const chars = arg("--reply-chars", 0);
  const reply = mark >= 0
    ? `<think>\n${"Let me think about this. ".repeat(20)}\n</think>\n\n` +
      `${Deno.args[mark + 1]} ${"and the answer goes on. ".repeat(40)}`
    : chars > 0
    ? "The answer goes on. ".repeat(Math.ceil(chars / 20)).slice(0, chars)
    : undefined;
  const fake = new FakeUpstream({ port: arg("--port", 11434), chunkDelayMs: arg("--chunk-delay", 0), reply });
  console.log(`fake upstream listening on ${fake.url}`);
}
