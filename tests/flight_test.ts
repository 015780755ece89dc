/** Single flight on its own: one call, late joiners replayed then live, leaving, failures reaching everyone. */
import { asBridgeError, UpstreamTimeout, UpstreamUnreachable } from "../src/core/errors.ts";
import { Flight, Flights } from "../src/cache/flight.ts";
import type { UpstreamExchange } from "../src/upstream/client.ts";
import { assert, assertEquals, assertRejects, waitFor } from "./assert.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An upstream exchange whose body the test writes chunk by chunk. */
function scriptedExchange() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const state = { released: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    cancel: () => void (state.cancelled = true),
  });
  const exchange: UpstreamExchange = {
    response: new Response(body, { headers: { "content-type": "text/event-stream" } }),
    failure: (error) => asBridgeError(error, (message) => new UpstreamUnreachable(message)),
    release: () => void state.released++,
  };
  return {
    exchange,
    state,
    write: (text: string) => controller.enqueue(encoder.encode(text)),
    end: () => controller.close(),
    fail: (error: Error) => controller.error(error),
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  let out = "";
  for await (const chunk of stream) out += decoder.decode(chunk);
  return out;
}

Deno.test("flight: one call; a late joiner gets what was recorded, then the rest live", async () => {
  const upstream = scriptedExchange();
  let calls = 0;
  const flight = new Flight(() => (calls++, Promise.resolve(upstream.exchange)));
  const first = flight.subscribe();
  assertEquals((await first.head).format, "sse");
  const firstText = readAll(first.body());
  upstream.write("data: 1\n\n");
  await waitFor(() => flight.recorded.length > 0, { message: "the first chunk was recorded" });
  const late = flight.subscribe();
  const lateText = readAll(late.body());
  upstream.write("data: 2\n\n");
  upstream.end();
  assertEquals(await firstText, "data: 1\n\ndata: 2\n\n");
  assertEquals(await lateText, "data: 1\n\ndata: 2\n\n");
  assertEquals(await flight.finished, true);
  assertEquals(decoder.decode(flight.recorded), "data: 1\n\ndata: 2\n\n");
  assertEquals(calls, 1);
  assertEquals(upstream.state.released, 1);
});

Deno.test("flight: the leader leaving does not stop the others; everyone leaving cancels the call", async () => {
  const upstream = scriptedExchange();
  const flight = new Flight(() => Promise.resolve(upstream.exchange));
  const leader = flight.subscribe().body().getReader();
  const follower = flight.subscribe().body().getReader();
  upstream.write("a");
  assertEquals(decoder.decode((await leader.read()).value), "a");
  await leader.cancel();
  upstream.write("b");
  assertEquals(decoder.decode((await follower.read()).value), "a");
  assertEquals(decoder.decode((await follower.read()).value), "b");
  assert(!upstream.state.cancelled, "a subscriber is still reading");
  await follower.cancel();
  await waitFor(() => upstream.state.cancelled, { message: "the upstream body was cancelled" });
  assertEquals(await flight.finished, false, "an abandoned answer is not complete (and not stored)");
});

Deno.test("flight: a failure mid-body reaches every subscriber; a failed start rejects the head", async () => {
  const upstream = scriptedExchange();
  const flight = new Flight(() => Promise.resolve(upstream.exchange));
  const one = readAll(flight.subscribe().body());
  const two = readAll(flight.subscribe().body());
  upstream.write("partial");
  upstream.fail(new Error("reset by peer"));
  for (const reading of [one, two]) {
    await assertRejects(() => reading, (error) => assert(error instanceof UpstreamUnreachable));
  }
  assertEquals(await flight.finished, false);

  const refused = new Flight(() => Promise.reject(new UpstreamTimeout(1000)));
  await assertRejects(() => refused.subscribe().head, (error) => assert(error instanceof UpstreamTimeout));
  assertEquals(await refused.finished, false);
});

Deno.test("flights: joinable until settled, then gone; settle sees whether the answer was complete", async () => {
  const flights = new Flights();
  const upstream = scriptedExchange();
  let settled: boolean | undefined;
  const flight = flights.start("k", () => Promise.resolve(upstream.exchange), (_, complete) => {
    settled = complete;
    return Promise.resolve();
  });
  assertEquals(flights.get("k"), flight);
  const reading = readAll(flight.subscribe().body());
  upstream.write("x");
  upstream.end();
  assertEquals(await reading, "x");
  await waitFor(() => flights.size === 0, { message: "the flight left the map" });
  assertEquals(settled, true);
});
