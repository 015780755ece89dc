import { Cancellation, schedule, setCallbackErrorReporter, sleep } from "../src/core/time.ts";
import { assert, assertEquals, assertRejects, waitFor } from "./assert.ts";

Deno.test("wheel timers fire after their delay (never early) and not when cancelled", async () => {
  const fired: number[] = [];
  const start = performance.now();
  schedule(30, () => fired.push(performance.now() - start));
  schedule(0, () => fired.push(-1));
  const cancelled = schedule(20, () => fired.push(999));
  cancelled.cancel();
  await waitFor(() => fired.length >= 2, { message: "both timers fired" });
  await sleep(50); // time for the cancelled one to fire, were it still scheduled
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

Deno.test("a throwing timer callback is reported and the wheel keeps firing the others", async () => {
  const reported: unknown[] = [];
  const previous = setCallbackErrorReporter((error) => reported.push(error));
  try {
    const fired: string[] = [];
    schedule(5, () => {
      throw new Error("boom");
    });
    schedule(5, () => fired.push("same tick"));
    schedule(40, () => fired.push("later"));
    await waitFor(() => fired.length === 2, { message: "the other timers fired" });
    assertEquals(fired, ["same tick", "later"]);
    assertEquals((reported[0] as Error).message, "boom");
  } finally {
    setCallbackErrorReporter(previous);
  }
});

Deno.test("a throwing abort listener is reported; the other listeners still run and none leaks", () => {
  const reported: unknown[] = [];
  const previous = setCallbackErrorReporter((error) => reported.push(error));
  try {
    const cancellation = new Cancellation();
    const seen: string[] = [];
    cancellation.onAbort(() => {
      throw new Error("listener failed");
    });
    cancellation.onAbort((reason) => seen.push(String(reason)));
    cancellation.abort("stop");
    assertEquals(seen, ["stop"]);
    assertEquals(reported.length, 1);
    // A listener added after the abort runs at once, and its failure is reported too.
    cancellation.onAbort(() => {
      throw new Error("late");
    });
    assertEquals((reported[1] as Error).message, "late");
  } finally {
    setCallbackErrorReporter(previous);
  }
});

Deno.test("wheel timers: cancelling any of a slot's timers leaves the others; a callback's new timer fires later", async () => {
  const fired: string[] = [];
  const timers = ["a", "b", "c", "d"].map((name) => schedule(10, () => fired.push(name)));
  timers[0].cancel(); // the slot's first
  timers[3].cancel(); // its last
  timers[3].cancel(); // twice: nothing more
  schedule(10, () => schedule(0, () => fired.push("from a callback")));
  await waitFor(() => fired.length === 3, { timeout: 2000, message: "the timers left fire" });
  assertEquals(fired, ["b", "c", "from a callback"], "in the order scheduled");
});

Deno.test("a cancellation starts what feeds it only when its first listener comes, and only once", () => {
  let started = 0;
  const cancellation = new Cancellation(() => started++);
  assertEquals(started, 0, "nothing waits on it yet (a cache hit)");
  const remove = cancellation.onAbort(() => {});
  cancellation.onAbort(() => {});
  assertEquals(started, 1);
  remove();
  const reasons: unknown[] = [];
  cancellation.onAbort((reason) => reasons.push(reason));
  cancellation.abort("gone");
  assertEquals([started, reasons], [1, ["gone"]]);
});
