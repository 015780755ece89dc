import { concatBytes } from "../src/core/bytes.ts";
import { Semaphore } from "../src/core/semaphore.ts";
import { Cancellation } from "../src/core/time.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

Deno.test("semaphore: at most `permits` holders; waiters served in arrival order", async () => {
  const semaphore = new Semaphore(2);
  await semaphore.acquire();
  await semaphore.acquire();
  assertEquals(semaphore.held, 2);
  assert(!semaphore.tryAcquire());
  const order: number[] = [];
  const waits = [1, 2, 3].map((n) => semaphore.acquire().then(() => order.push(n)));
  assertEquals(semaphore.waiting, 3);
  semaphore.release();
  semaphore.release();
  semaphore.release();
  await Promise.all(waits);
  assertEquals(order, [1, 2, 3]);
  assertEquals(semaphore.held, 2);
});

Deno.test("semaphore: a cancelled waiter leaves the queue at once and never gets a permit", async () => {
  const semaphore = new Semaphore(1);
  await semaphore.acquire();
  const cancellation = new Cancellation();
  const waiting = semaphore.acquire(cancellation);
  cancellation.abort(new Error("client left"));
  await assertRejects(() => waiting, (error) => assertEquals((error as Error).message, "client left"));
  assertEquals(semaphore.waiting, 0);
  semaphore.release();
  assertEquals(semaphore.held, 0, "the permit went back to the pool, not to the departed waiter");
  semaphore.release();
  assertEquals(semaphore.held, 0, "an extra release does not make a permit out of nothing");
});

Deno.test("concatBytes joins parts, and a single part is returned as it is", () => {
  const a = new Uint8Array([1, 2]);
  assertEquals(concatBytes([a]), a);
  assertEquals([...concatBytes([a, new Uint8Array([3]), new Uint8Array(0)])], [1, 2, 3]);
  assertEquals(concatBytes([]).length, 0);
});
