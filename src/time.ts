/** Time helpers shared by the steps that wait: an injectable clock and an abortable sleep. */

/** A source of monotonic milliseconds; tests pass their own so expiry needs no sleeping. */
export interface Clock {
  now(): number;
}

export const monotonicClock: Clock = performance;

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
