/**
 * The bridge's life after start: serving, then draining on a stop signal (readiness turns 503 and no new
 * requests are taken), then the drain deadline, when streams still open are ended with an error event.
 */
import { ShuttingDown } from "../core/errors.ts";
import { Cancellation } from "../core/time.ts";

export class Lifecycle {
  #draining = false;
  readonly #deadline = new Cancellation();

  get draining(): boolean {
    return this.#draining;
  }

  /** Aborts, with a `ShuttingDown` reason, when the drain deadline passes. */
  get deadline(): Cancellation {
    return this.#deadline;
  }

  startDraining(): void {
    this.#draining = true;
  }

  /** Ends every stream still open. */
  expire(): void {
    this.#draining = true;
    this.#deadline.abort(new ShuttingDown());
  }
}
