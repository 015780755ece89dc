import { Cancellation, schedule, sleep, TIMER_RESOLUTION_MS } from "../src/core/time.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

Deno.test("wheel timers fire after their delay (never early) and not when cancelled", async () => {
  const fired: number[] = [];
  const start = performance.now();
  schedule(30, () => fired.push(performance.now() - start));
  schedule(0, () => fired.push(-1));
  const cancelled = schedule(20, () => fired.push(999));
  cancelled.cancel();
  await sleep(30 + 4 * TIMER_RESOLUTION_MS);
  assertEquals(fired.length, 2);
  assertEquals(fired[0], -1);
  assert(fired[1] >= 30 - 1, `fired after ${fired[1]} ms`);
});

Deno.test("Cancellation: listeners run once; late listeners run at once; sleep is abortable", async () => {
  const cancellation = new Cancellation();
  const seen: unknown[] = [];
  const remove = cancellation.onAbort((reason) => seen.push(reason));
  cancellation.onAbort((reason) => seen.push(`second ${reason}`));
  remove();
  cancellation.abort("why");
  cancellation.abort("again");
  assertEquals(seen, ["second why"]);
  cancellation.onAbort((reason) => seen.push(`late ${reason}`));
  assertEquals(seen.at(-1), "late why");
  await assertRejects(() => sleep(10_000, cancellation), (error) => assertEquals(error, "why"));
  const signal = new Cancellation();
  const asSignal = signal.toSignal();
  signal.abort("stop");
  assertEquals(asSignal.reason, "stop");
});
