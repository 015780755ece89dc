import { tokenBucket } from "../src/upstream/rate_limit.ts";
import { Cancellation } from "../src/core/time.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

function fakeClock() {
  const clock = { t: 0, now: () => clock.t };
  return clock;
}

Deno.test("a full bucket allows one second's worth at once, then refuses with the wait", () => {
  const clock = fakeClock();
  const bucket = tokenBucket(5, clock);
  for (let i = 0; i < 5; i++) assertEquals(bucket.tryTake(), 0);
  assertEquals(bucket.tryTake(), 200);
  clock.t = 100;
  assertEquals(bucket.tryTake(), 100);
  clock.t = 200;
  assertEquals(bucket.tryTake(), 0);
  assertEquals(bucket.tryTake(), 200);
});

Deno.test("tokens refill at the rate and never above the burst", () => {
  const clock = fakeClock();
  const bucket = tokenBucket(2, clock);
  clock.t = 60_000;
  assertEquals(bucket.tryTake(), 0);
  assertEquals(bucket.tryTake(), 0);
  assert(bucket.tryTake() > 0);
});

Deno.test("take() waits for a token and can be cancelled", async () => {
  const bucket = tokenBucket(20);
  for (let i = 0; i < 20; i++) bucket.tryTake();
  const start = performance.now();
  await bucket.take();
  assert(performance.now() - start >= 40, "waited for the next token");
  const cancellation = new Cancellation();
  for (let i = 0; i < 20; i++) bucket.tryTake();
  const waiting = bucket.take(cancellation);
  cancellation.abort(new Error("gone"));
  await assertRejects(() => waiting, (error) => assertEquals((error as Error).message, "gone"));
});

Deno.test("a bucket refuses a rate that is not positive", () => {
  let refused = false;
  try {
    tokenBucket(0);
  } catch (error) {
    refused = error instanceof RangeError;
  }
  assert(refused);
});
