/**
 * Single flight: concurrent identical cache misses make one upstream call. The flight owns that call and
 * records its answer as it arrives; every request for the key subscribes and reads the recording, then the rest
 * live — so a joiner of a running stream gets the chunks seen so far, then the new ones as they come. The leader
 * is just the first subscriber: when it leaves, the others keep the answer coming; when all leave, the upstream
 * call is cancelled. If the call fails, every subscriber gets the failure; nobody hangs.
 */
import { concatBytes } from "../core/bytes.ts";
import { asBridgeError, type BridgeError, ClientClosed } from "../core/errors.ts";
import type { UpstreamExchange } from "../upstream/client.ts";
import { type StreamFormat, streamFormat } from "../stream/format.ts";

export interface FlightHead {
  readonly status: number;
  readonly headers: Headers;
  readonly format?: StreamFormat;
  /** Framed by the upstream closing the connection: whether it is whole cannot be known. */
  readonly closeFramed?: boolean;
}

/** What one subscriber reads. */
export interface FlightView {
  readonly head: Promise<FlightHead>;
  /** The answer from its first byte: what was recorded, then the rest live. */
  body(): ReadableStream<Uint8Array>;
}

export class Flight {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  #state: "running" | "complete" | "failed" = "running";
  #error?: BridgeError;
  #waiters: (() => void)[] = [];
  #subscribers = 0;
  #cancelUpstream = () => {};
  #resolveHead!: (head: FlightHead) => void;
  #rejectHead!: (error: BridgeError) => void;
  readonly head: Promise<FlightHead> = new Promise((resolve, reject) => {
    this.#resolveHead = resolve;
    this.#rejectHead = reject;
  });
  /** Resolves once the call is over: true when the whole answer arrived. */
  readonly finished: Promise<boolean>;

  constructor(start: () => Promise<UpstreamExchange>) {
    this.head.catch(() => {}); // a flight nobody subscribed to must not raise an unhandled rejection
    this.finished = this.#run(start);
  }

  /** The recorded answer (whole once `finished` resolved true). */
  get recorded(): Uint8Array<ArrayBuffer> {
    return concatBytes(this.#chunks);
  }

  subscribe(): FlightView {
    this.#subscribers++;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      if (--this.#subscribers === 0 && this.#state === "running") this.#cancelUpstream();
    };
    let index = 0;
    const pull = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      for (;;) {
        if (index < this.#chunks.length) return controller.enqueue(this.#chunks[index++]);
        if (this.#state === "complete") {
          leave();
          return controller.close();
        }
        if (this.#state === "failed") {
          leave();
          return controller.error(this.#error);
        }
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    };
    return {
      head: this.head,
      body: () => new ReadableStream<Uint8Array>({ pull, cancel: leave }, { highWaterMark: 0 }),
    };
  }

  async #run(start: () => Promise<UpstreamExchange>): Promise<boolean> {
    let exchange: UpstreamExchange;
    try {
      exchange = await start();
    } catch (error) {
      this.#fail(asBridgeError(error));
      this.#rejectHead(this.#error!);
      return false;
    }
    const { response } = exchange;
    this.#resolveHead({
      status: response.status,
      headers: response.headers,
      format: streamFormat(response.headers.get("content-type")),
      closeFramed: exchange.closeFramed,
    });
    try {
      if (response.body) {
        const reader = response.body.getReader();
        this.#cancelUpstream = () => reader.cancel(new ClientClosed()).catch(() => {});
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (this.#subscribers === 0) throw new ClientClosed(); // everyone left: stop, store nothing
          this.#chunks.push(value);
          this.#size += value.length;
          this.#wake();
        }
      }
      if (this.#subscribers === 0 && this.#state === "running") throw new ClientClosed();
      this.#state = "complete";
      this.#wake();
      return true;
    } catch (error) {
      this.#fail(exchange.failure(error));
      return false;
    } finally {
      exchange.release();
    }
  }

  #fail(error: BridgeError): void {
    this.#state = "failed";
    this.#error = error;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** The flights in progress, by cache key. */
export class Flights {
  readonly #running = new Map<string, Flight>();
  /** Flights not yet settled (their answer may still be on its way into the store). */
  readonly #settling = new Set<Promise<void>>();

  get(key: string): Flight | undefined {
    return this.#running.get(key);
  }

  /**
   * Starts the flight for `key`. `settle` runs when it is over (to store a complete answer); the flight stays
   * joinable until then, so no request slips between the end of the call and the stored answer.
   */
  start(
    key: string,
    send: () => Promise<UpstreamExchange>,
    settle: (flight: Flight, complete: boolean) => Promise<void>,
  ): Flight {
    const flight = new Flight(send);
    this.#running.set(key, flight);
    const settling: Promise<void> = flight.finished
      .then((complete) => settle(flight, complete))
      // A refresh may have started a newer flight for the key meanwhile: leave that one in place.
      .finally(() => {
        if (this.#running.get(key) === flight) this.#running.delete(key);
        this.#settling.delete(settling);
      });
    this.#settling.add(settling);
    return flight;
  }

  /** Resolves once every flight started so far has settled (its answer stored, or not). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#settling]);
  }

  get size(): number {
    return this.#running.size;
  }
}
