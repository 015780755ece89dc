/** The stream relay on its own: chunks in order, honest endings, keep-alives, cancellation reaching the source. */
import { BridgeError, UpstreamUnreachable } from "../src/core/errors.ts";
import { Cancellation } from "../src/core/time.ts";
import { relay, type RelayOptions, type RelayOutcome } from "../src/stream/relay.ts";
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A source that yields `chunks`, then ends, fails with `error`, or stays open; it records its cancellation. */
function source(chunks: string[], end: "close" | Error | "open" = "close") {
  const state = { cancelled: undefined as unknown, pulls: 0 };
  let index = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      state.pulls++;
      if (index < chunks.length) return controller.enqueue(encoder.encode(chunks[index++]));
      if (end === "close") return controller.close();
      if (end instanceof Error) return controller.error(end);
      return new Promise(() => {}); // never answers
    },
    cancel(reason) {
      state.cancelled = reason ?? "cancelled";
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

function options(overrides: Partial<RelayOptions> = {}) {
  const ends: [RelayOutcome, BridgeError | undefined][] = [];
  const opts: RelayOptions = {
    failure: (error) => error instanceof BridgeError ? error : new UpstreamUnreachable(String(error)),
    onEnd: (outcome, error) => ends.push([outcome, error]),
    ...overrides,
  };
  return { opts, ends };
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  let out = "";
  for await (const chunk of stream) out += decoder.decode(chunk);
  return out;
}

Deno.test("relay: chunks pass through in order and the end is reported once as complete", async () => {
  const { stream } = source(["data: 1\n\n", "data: 2\n\n", "data: [DONE]\n\n"]);
  const sizes: number[] = [];
  const { opts, ends } = options({ format: "sse", onChunk: (size) => sizes.push(size) });
  assertEquals(await text(relay(stream, opts)), "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n");
  assertEquals(sizes, [9, 9, 14]);
  assertEquals(ends, [["complete", undefined]]);
});

Deno.test("relay: a source that fails mid-stream ends with an error event, never a silent cut", async () => {
  const { stream } = source(["data: 1\n\ndata: par"], new Error("connection reset"));
  const { opts, ends } = options({ format: "sse" });
  const out = await text(relay(stream, opts));
  assert(out.startsWith("data: 1\n\ndata: par\n\nevent: error\ndata: "), out);
  assertMatch(out, /"code":"upstream_unreachable"/);
  assertEquals(ends[0][0], "failed");
  const ndjson = source(['{"a":1}\n'], new Error("cut"));
  const lines = await text(relay(ndjson.stream, options({ format: "ndjson" }).opts));
  assertEquals(JSON.parse(lines.split("\n")[1]).done, true);
});

Deno.test("relay: an opaque body that fails errors the response", async () => {
  const { stream } = source(["abc"], new Error("cut"));
  const { opts, ends } = options();
  let failed: unknown;
  await text(relay(stream, opts)).catch((error) => failed = error);
  assert(failed instanceof UpstreamUnreachable);
  assertEquals(ends[0][0], "failed");
});

Deno.test("relay: a client that cancels cancels the source", async () => {
  const { stream, state } = source(["data: 1\n\n"], "open");
  const { opts, ends } = options({ format: "sse" });
  const reader = relay(stream, opts).getReader();
  assertEquals(decoder.decode((await reader.read()).value), "data: 1\n\n");
  await reader.cancel("client left");
  assertEquals(state.cancelled, "client left");
  assertEquals(ends, [["cancelled", undefined]]);
});

Deno.test("relay: SSE silence gets keep-alive comments; the stop cancellation ends the stream", async () => {
  const { stream, state } = source(["data: 1\n\n"], "open");
  const stop = new Cancellation();
  let keepalives = 0;
  const { opts, ends } = options({ format: "sse", keepaliveMs: 20, stop, onKeepalive: () => keepalives++ });
  const reader = relay(stream, opts).getReader();
  await reader.read();
  assertEquals(decoder.decode((await reader.read()).value), ": keep-alive\n\n");
  stop.abort(new BridgeError(503, "server_error", "shutting_down", "stopping"));
  let rest = "";
  for (let step = await reader.read(); !step.done; step = await reader.read()) {
    rest += decoder.decode(step.value);
  }
  assertMatch(rest, /event: error\ndata: .*"shutting_down"/);
  assert(keepalives >= 1);
  assertEquals(ends[0][0], "failed");
  await waitFor(() => state.cancelled !== undefined, { message: "the source was cancelled" });
});

Deno.test("relay: a mapper rewrites chunks, may swallow some, and adds its tail at the end", async () => {
  const { stream } = source(["a", "skip", "b"]);
  const map = {
    feed: (chunk: Uint8Array) =>
      decoder.decode(chunk) === "skip" ? undefined : encoder.encode(decoder.decode(chunk).toUpperCase()),
    end: () => encoder.encode("!"),
  };
  assertEquals(await text(relay(stream, options({ format: "ndjson", map }).opts)), "AB!");
});
