/** Single flight on its own: one call, late joiners replayed then live, leaving, failures reaching everyone. */
import { asBridgeError, UpstreamTimeout, UpstreamUnreachable } from "../src/core/errors.ts";
import { FellBehind, Flight, Flights } from "../src/cache/flight.ts";
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

/** An upstream body of `chunks` chunks of `size` bytes, produced only when read; counts what was read. */
function endlessExchange(chunks: number, size: number) {
  const state = { produced: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.produced === chunks) return controller.close();
      state.produced++;
      controller.enqueue(new Uint8Array(size));
    },
    cancel: () => void (state.cancelled = true),
  }, { highWaterMark: 0 });
  const exchange: UpstreamExchange = {
    response: new Response(body, { headers: { "content-type": "text/event-stream" } }),
    failure: (error) => asBridgeError(error),
    release: () => {},
  };
  return { exchange, state };
}

Deno.test("flight: the upstream is read only as fast as the subscriber ahead reads (backpressure)", async () => {
  const upstream = endlessExchange(1000, 1024);
  const flight = new Flight(() => Promise.resolve(upstream.exchange));
  const reader = flight.subscribe().body().getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  await new Promise((resolve) => setTimeout(resolve, 50)); // a paused client
  assert(upstream.state.produced <= 4, `read ${upstream.state.produced} chunks for 3 delivered`);
  await reader.cancel();
  await waitFor(() => upstream.state.cancelled, { message: "the upstream was cancelled" });
});

Deno.test("flight: past the record limit it stops recording, takes no new joiners, and drops a follower far behind", async () => {
  const flights = new Flights({ maxRecordBytes: 64 * 1024, maxLagBytes: 64 * 1024 });
  const upstream = endlessExchange(1000, 1024); // ~1 MiB, far over the limit
  let stored: boolean | undefined;
  const flight = flights.start("big", () => Promise.resolve(upstream.exchange), (done, complete) => {
    stored = complete && done.storable;
    return Promise.resolve();
  });
  const leader = flight.subscribe().body().getReader();
  const follower = flight.subscribe().body().getReader(); // joins, then never reads
  let read = 0;
  for (;;) {
    const { done, value } = await leader.read();
    if (done) break;
    read += value.length;
    if (read === 128 * 1024) {
      assertEquals(flights.get("big"), undefined, "no new joiners once too big to store");
    }
  }
  assertEquals(read, 1000 * 1024, "the leader got the whole answer, never waiting for the follower");
  await assertRejects(() => follower.read(), (error) => assert(error instanceof FellBehind));
  assertEquals(flight.storable, false);
  assertEquals(flight.recorded.length <= 64 * 1024 + 1024, true, "what is held stays under the lag limit");
  await waitFor(() => stored !== undefined);
  assertEquals(stored, false);
});
