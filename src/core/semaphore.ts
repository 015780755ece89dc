/**
 * A counting semaphore with a FIFO queue of waiters: at most `permits` holders at once; the others wait in
 * arrival order. A waiter whose cancellation aborts leaves the queue at once.
 */
import type { Cancellation } from "./time.ts";

export class Semaphore {
  #available: number;
  readonly #waiters: { grant: () => void }[] = [];

  constructor(readonly permits: number) {
    if (!Number.isInteger(permits) || permits < 1) {
      throw new RangeError(
        `Cannot create a semaphore as 'permits' must be a positive integer: current value is ${permits}`,
      );
    }
    this.#available = permits;
  }

  /** Permits held now. */
  get held(): number {
    return this.permits - this.#available;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Takes a permit now if one is free; true if it did. */
  tryAcquire(): boolean {
    if (this.#available === 0) return false;
    this.#available--;
    return true;
  }

  /** Waits for a permit; rejects with the cancellation's reason if it aborts first. */
  acquire(cancellation?: Cancellation): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          stopWatching?.();
          resolve();
        },
      };
      this.#waiters.push(waiter);
      const stopWatching = cancellation?.onAbort((reason) => {
        const index = this.#waiters.indexOf(waiter);
        if (index < 0) return;
        this.#waiters.splice(index, 1);
        reject(reason);
      });
    });
  }

  /** Gives a permit back: to the longest waiter, or to the pool. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next.grant();
    else if (this.#available < this.permits) this.#available++;
  }
}
