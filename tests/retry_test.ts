import { backoffDelay, retryAfterMs, retryReasonForStatus } from "../src/upstream/retry.ts";
import { assert, assertEquals } from "./assert.ts";

const policy = { attempts: 5, minIntervalMs: 500, maxIntervalMs: 10_000 };

Deno.test("backoff stays within [min, min(max, min*2^n)] and reaches both ends", () => {
  for (let retry = 0; retry < 12; retry++) {
    const ceiling = Math.min(10_000, 500 * 2 ** retry);
    assertEquals(backoffDelay(retry, policy, () => 0), 500);
    assertEquals(backoffDelay(retry, policy, () => 1), ceiling);
    for (let i = 0; i < 50; i++) {
      const delay = backoffDelay(retry, policy);
      assert(delay >= 500 && delay <= ceiling, `retry ${retry}: ${delay}`);
    }
  }
  assertEquals(backoffDelay(1000, policy, () => 1), 10_000);
});

Deno.test("Retry-After in seconds, as an HTTP-date, as retry-after-ms, and garbage", () => {
  const now = Date.parse("Sun, 22 Nov 2026 10:00:00 GMT");
  assertEquals(retryAfterMs(new Headers({ "retry-after": "3" }), now), 3000);
  assertEquals(retryAfterMs(new Headers({ "retry-after": "1.5" }), now), 1500);
  assertEquals(retryAfterMs(new Headers({ "retry-after": "Sun, 22 Nov 2026 10:00:07 GMT" }), now), 7000);
  assertEquals(retryAfterMs(new Headers({ "retry-after": "Sun, 22 Nov 2026 09:00:00 GMT" }), now), 0);
  assertEquals(retryAfterMs(new Headers({ "retry-after-ms": "250", "retry-after": "9" }), now), 250);
  assertEquals(retryAfterMs(new Headers({ "retry-after": "soon" }), now), undefined);
  assertEquals(retryAfterMs(new Headers(), now), undefined);
});

Deno.test("which statuses are retried", () => {
  for (const status of [429, 500, 502, 503, 504]) {
    assertEquals(retryReasonForStatus(status), `status_${status}`);
  }
  for (const status of [200, 400, 401, 403, 404, 409, 422, 501]) {
    assertEquals(retryReasonForStatus(status), undefined);
  }
});
