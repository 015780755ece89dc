/**
 * A token bucket in front of upstream calls: `rate` tokens a second, holding at most one second's worth, so a
 * quiet bridge may send a burst of `rate` requests and then `rate` a second.
 */
import { type Cancellation, type Clock, monotonicClock, sleep } from "../core/time.ts";

export interface RateLimiter {
  /** Takes a token now, or returns how many ms until one is available (and takes nothing). */
  tryTake(): number | Promise<number>;
  /** Waits for a token; rejects with the cancellation's reason if it aborts first. */
  take(cancellation?: Cancellation): Promise<void>;
}

/** A limiter that answers at once, from this process's own state. */
export interface LocalRateLimiter extends RateLimiter {
  tryTake(): number;
}

/** A limiter that never limits, for `--rate-limit 0`. */
export const unlimited: RateLimiter = { tryTake: () => 0, take: () => Promise.resolve() };

export function tokenBucket(
  rate: number,
  clock: Clock = monotonicClock,
): LocalRateLimiter {
  if (!(rate > 0)) {
    throw new RangeError(`Cannot build a token bucket as 'rate' must be positive: current value is ${rate}`);
  }
  const capacity = Math.max(1, rate);
  let tokens = capacity;
  let updatedAt = clock.now();
  /** Waiters queue behind each other so a late arrival cannot overtake one that has waited longer. */
  let queue: Promise<void> = Promise.resolve();

  function refill(): void {
    const now = clock.now();
    tokens = Math.min(capacity, tokens + ((now - updatedAt) * rate) / 1000);
    updatedAt = now;
  }

  function tryTake(): number {
    refill();
    if (tokens >= 1) {
      tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - tokens) * 1000) / rate);
  }

  function take(cancellation?: Cancellation): Promise<void> {
    const turn = queue.then(() => waitForToken(cancellation));
    queue = turn.catch(() => {});
    return turn;
  }

  async function waitForToken(cancellation?: Cancellation): Promise<void> {
    for (let wait = tryTake(); wait > 0; wait = tryTake()) await sleep(wait, cancellation);
  }

  return { tryTake, take };
}
