/**
 * Time for the hot path. Each Deno setTimeout/clearTimeout pair is a trip into the runtime (about 4 µs here) and a
 * proxied request needs several deadlines, so deadlines live in a coarse timer wheel driven by one interval, and
 * cancellation is a plain object rather than AbortController and AbortSignal.any chains.
 */

/** A source of monotonic milliseconds; tests pass their own so expiry needs no sleeping. */
export interface Clock {
  now(): number;
}

export const monotonicClock: Clock = performance;

/** Epoch milliseconds: for times that outlive the process, such as a stored answer's expiry. */
export const wallClock: Clock = Date;

/** A one-shot cancellation: cheaper than AbortController, and convertible to a signal where an API wants one. */
export class Cancellation {
  /** A cancellation that aborts with the signal (one listener on the signal, added here). */
  static fromSignal(signal: AbortSignal): Cancellation {
    const cancellation = new Cancellation();
    cancellation.follow(signal);
    return cancellation;
  }

  #aborted = false;
  #reason: unknown;
  /** Made with the first listener: most cancellations (a cache hit's) never get one. */
  #listeners: Set<(reason: unknown) => void> | undefined;

  /**
   * `whenWatched`, if given, runs once, when the first listener is added: what feeds this cancellation (watching
   * a client for leaving) needs to start only when something waits on it.
   */
  constructor(private whenWatched?: () => void) {}

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  /** Aborts once; every listener runs, even when one of them throws (what it throws is reported). */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    const listeners = [...this.#listeners ?? []];
    this.#listeners = undefined;
    for (const listener of listeners) runReporting(listener, reason);
  }

  /** Calls `listener` on abort (at once if already aborted); returns a function that removes it. */
  onAbort(listener: (reason: unknown) => void): () => void {
    if (this.#aborted) {
      runReporting(listener, this.#reason);
      return () => {};
    }
    const listeners = this.#listeners ??= new Set();
    listeners.add(listener);
    if (this.whenWatched) {
      const start = this.whenWatched;
      this.whenWatched = undefined;
      start();
    }
    return () => listeners.delete(listener);
  }

  /** Aborts when the signal does (at once if it already has). */
  follow(signal: AbortSignal): void {
    if (signal.aborted) this.abort(signal.reason);
    else signal.addEventListener("abort", () => this.abort(signal.reason), { once: true });
  }

  throwIfAborted(): void {
    if (this.#aborted) throw this.#reason;
  }

  /** An AbortSignal that follows this cancellation, for APIs such as fetch. */
  toSignal(): AbortSignal {
    const controller = new AbortController();
    this.onAbort((reason) => controller.abort(reason));
    return controller.signal;
  }
}

/**
 * Where a throwing timer callback or abort listener is reported: it must not stop the timer wheel (every other
 * deadline would stop firing) nor the other listeners of a cancellation. Tests replace it.
 */
let reportCallbackError = (error: unknown): void => {
  console.error("a timer or cancellation callback threw:", error);
};

/** Replaces the reporter; returns the previous one. */
export function setCallbackErrorReporter(report: (error: unknown) => void): (error: unknown) => void {
  const previous = reportCallbackError;
  reportCallbackError = report;
  return previous;
}

function runReporting<T>(callback: (argument: T) => void, argument: T): void {
  try {
    callback(argument);
  } catch (error) {
    reportCallbackError(error);
  }
}

export interface Timer {
  cancel(): void;
}

/** Timer resolution of the wheel: a deadline fires up to this much late, never early. */
export const TIMER_RESOLUTION_MS = 10;

/**
 * Deadlines in slots of TIMER_RESOLUTION_MS, advanced by one interval while any is pending. Each slot is a
 * doubly linked list threaded through its timers, so a cancel (most deadlines are cancelled: the request ended
 * first) is a few pointer writes, with no hash-set deletion to churn on thousands of cancels a second.
 */
class TimerWheel {
  /** Each slot's timers, first scheduled first. */
  readonly #slots = new Map<number, { first: WheelTimer; last: WheelTimer }>();
  #pending = 0;
  #lastTick = 0;
  #interval: ReturnType<typeof setInterval> | undefined;

  schedule(ms: number, callback: () => void): Timer {
    this.#pending++;
    if (this.#interval === undefined) this.#start();
    // Never into a slot the wheel has already passed, or the timer would never fire.
    const slot = Math.max(this.#lastTick + 1, Math.ceil((performance.now() + ms) / TIMER_RESOLUTION_MS));
    const timer = new WheelTimer(this, slot, callback);
    const list = this.#slots.get(slot);
    if (list) {
      timer.previous = list.last;
      list.last.next = timer;
      list.last = timer;
    } else {
      this.#slots.set(slot, { first: timer, last: timer });
    }
    return timer;
  }

  remove(timer: WheelTimer): void {
    const { previous, next } = timer;
    if (previous) previous.next = next;
    if (next) next.previous = previous;
    if (!previous || !next) {
      const list = this.#slots.get(timer.slot)!;
      if (!previous && !next) this.#slots.delete(timer.slot);
      else if (!previous) list.first = next!;
      else list.last = previous;
    }
    timer.previous = timer.next = undefined;
    // The interval stops at its next tick if nothing is pending then: stopping it here would restart it for the
    // very next request (requests schedule and cancel deadlines thousands of times a second).
    this.#pending--;
  }

  #start(): void {
    this.#lastTick = Math.floor(performance.now() / TIMER_RESOLUTION_MS);
    this.#interval = setInterval(() => this.#advance(), TIMER_RESOLUTION_MS);
  }

  #stop(): void {
    clearInterval(this.#interval);
    this.#interval = undefined;
  }

  #advance(): void {
    const now = Math.floor(performance.now() / TIMER_RESOLUTION_MS);
    for (let tick = this.#lastTick + 1; tick <= now; tick++) {
      // Passed before its timers fire, so what their callbacks schedule lands in a later slot.
      this.#lastTick = tick;
      // Each timer is unlinked before it fires: a callback may cancel others.
      for (let timer = this.#slots.get(tick)?.first; timer; timer = this.#slots.get(tick)?.first) {
        this.remove(timer);
        timer.fire();
      }
    }
    this.#lastTick = now;
    if (this.#pending === 0) this.#stop();
  }
}

class WheelTimer implements Timer {
  #done = false;
  /** Neighbours in the slot's list. */
  previous: WheelTimer | undefined;
  next: WheelTimer | undefined;

  constructor(readonly wheel: TimerWheel, readonly slot: number, readonly callback: () => void) {}

  fire(): void {
    this.#done = true;
    runReporting(this.callback, undefined);
  }

  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    this.wheel.remove(this);
  }
}

const wheel = new TimerWheel();

/** Calls `callback` after about `ms` (up to TIMER_RESOLUTION_MS late); cheap to schedule and cancel. */
export function schedule(ms: number, callback: () => void): Timer {
  return wheel.schedule(ms, callback);
}

/** Resolves after `ms`, or rejects with the cancellation's reason as soon as it aborts. */
export function sleep(ms: number, cancellation?: Cancellation): Promise<void> {
  return new Promise((resolve, reject) => {
    if (cancellation?.aborted) return reject(cancellation.reason);
    const timer = setTimeout(() => {
      removeListener?.();
      resolve();
    }, ms);
    const removeListener = cancellation?.onAbort((reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}

/** Waits for `promises` to settle, but no longer than `ms` (a graceful stop's bound); never rejects. */
export async function settledWithin(promises: readonly Promise<unknown>[], ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}
