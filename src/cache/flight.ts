/**
 * Single flight: concurrent identical cache misses make one upstream call. The flight owns that call and
 * records its answer as it arrives; every request for the key subscribes and reads the recording, then the rest
 * live — so a joiner of a running stream gets the chunks seen so far, then the new ones as they come.
 *
 * Memory stays bounded, and nobody waits for a slower client:
 * - the upstream is read on demand, when the subscriber furthest ahead wants the next chunk: a slow client (or
 *   all of them) slows the upstream down (backpressure), and the fastest never waits for the others;
 * - the recording holds at most `maxRecordBytes` (what a stored answer may hold). Past it the answer cannot be
 *   stored: recording stops, the flight takes no new subscribers (they make their own call), and chunks every
 *   subscriber has read are let go;
 * - a subscriber that then trails the one ahead by more than `maxLagBytes` is dropped with an error, rather than
 *   holding the difference in memory.
 * When every subscriber has left, the upstream call is cancelled. If the call fails, every subscriber gets the
 * failure; nobody hangs.
 */
import { concatBytes } from "../core/bytes.ts";
import { asBridgeError, BridgeError, ClientClosed } from "../core/errors.ts";
import type { UpstreamExchange } from "../upstream/client.ts";
import { type StreamFormat, streamFormat } from "../stream/format.ts";

export interface FlightHead {
  readonly status: number;
  readonly headers: Headers;
  readonly format?: StreamFormat;
  /** Framed by the upstream closing the connection: whether it is whole cannot be known. */
  readonly closeFramed?: boolean;
  /** How long the call waited for an upstream slot, in ms. */
  readonly queuedMs?: number;
}

/** What one subscriber reads. */
export interface FlightView {
  readonly head: Promise<FlightHead>;
  /** The answer from its first byte: what was recorded, then the rest live. */
  body(): ReadableStream<Uint8Array>;
}

export interface FlightOptions {
  /** The most the flight records: what a stored answer may hold. @default 32 MiB */
  maxRecordBytes?: number;
  /** Once recording stopped, the most a subscriber may trail the one ahead. @default maxRecordBytes */
  maxLagBytes?: number;
  /** Called once, when recording stops (the answer is too large to store). */
  onRecordingStopped?(): void;
}

/** A subscriber dropped for reading too slowly to keep up with the request it joined. */
export class FellBehind extends BridgeError {
  constructor() {
    super(
      503,
      "server_error",
      "fell_behind",
      "This request read its answer too slowly to keep up with the identical request it joined: retry it.",
      { "retry-after": "1" },
    );
  }
}

interface Subscriber {
  /** The index of the next chunk it reads (counted from the answer's first chunk). */
  index: number;
  /** Set when it was dropped. */
  dropped?: BridgeError;
}

const DEFAULT_MAX_RECORD_BYTES = 32 * 1024 * 1024;

export class Flight {
  /** Chunks from index `#base` on (earlier ones were let go once recording stopped). */
  #chunks: Uint8Array[] = [];
  #base = 0;
  #heldBytes = 0;
  #recordedBytes = 0;
  #recording = true;
  #state: "running" | "complete" | "failed" = "running";
  #error?: BridgeError;
  #waiters: (() => void)[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  #exchange?: UpstreamExchange;
  #reading = false;
  readonly #maxRecordBytes: number;
  readonly #maxLagBytes: number;
  #head?: FlightHead;
  #resolveHead!: (head: FlightHead) => void;
  #rejectHead!: (error: BridgeError) => void;
  #finish!: (complete: boolean) => void;
  readonly head: Promise<FlightHead> = new Promise((resolve, reject) => {
    this.#resolveHead = resolve;
    this.#rejectHead = reject;
  });
  /** Resolves once the call is over: true when the whole answer arrived. */
  readonly finished: Promise<boolean> = new Promise((resolve) => this.#finish = resolve);

  constructor(start: () => Promise<UpstreamExchange>, private readonly options: FlightOptions = {}) {
    this.#maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.#maxLagBytes = options.maxLagBytes ?? this.#maxRecordBytes;
    this.head.catch(() => {}); // a flight nobody subscribed to must not raise an unhandled rejection
    this.#start(start);
  }

  /** Whether the whole answer was recorded (so it may be stored). */
  get storable(): boolean {
    return this.#recording;
  }

  /** Its head and whole answer, once all of it arrived and was recorded (it may still be on its way to the store). */
  get answered(): { head: FlightHead; body: Uint8Array<ArrayBuffer> } | undefined {
    if (this.#state !== "complete" || !this.#recording || !this.#head) return undefined;
    return { head: this.#head, body: this.recorded };
  }

  /** The recorded answer (whole once `finished` resolved true, if `storable`). */
  get recorded(): Uint8Array<ArrayBuffer> {
    return concatBytes(this.#chunks);
  }

  subscribe(): FlightView {
    const subscriber: Subscriber = { index: 0 };
    this.#subscribers.add(subscriber);
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      this.#subscribers.delete(subscriber);
      if (this.#subscribers.size === 0 && this.#state === "running") this.#abandon();
      else this.#letGo();
    };
    const pull = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      for (;;) {
        if (subscriber.dropped) {
          leave();
          return controller.error(subscriber.dropped);
        }
        const offset = subscriber.index - this.#base;
        if (offset < this.#chunks.length) {
          controller.enqueue(this.#chunks[offset]);
          subscriber.index++;
          return this.#letGo();
        }
        if (this.#state === "complete") {
          leave();
          return controller.close();
        }
        if (this.#state === "failed") {
          leave();
          return controller.error(this.#error);
        }
        // At the live edge: this subscriber is the one ahead, and asks the upstream for more.
        this.#readUpstream();
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    };
    return {
      head: this.head,
      body: () => new ReadableStream<Uint8Array>({ pull, cancel: leave }, { highWaterMark: 0 }),
    };
  }

  async #start(start: () => Promise<UpstreamExchange>): Promise<void> {
    let exchange: UpstreamExchange;
    try {
      exchange = await start();
    } catch (error) {
      const failure = asBridgeError(error);
      this.#end("failed", failure);
      this.#rejectHead(failure);
      return;
    }
    this.#exchange = exchange;
    const { response } = exchange;
    this.#head = {
      status: response.status,
      headers: response.headers,
      format: streamFormat(response.headers.get("content-type")),
      closeFramed: exchange.closeFramed,
      queuedMs: exchange.queuedMs,
    };
    this.#resolveHead(this.#head);
    if (this.#state !== "running") { // everyone left before the answer began
      response.body?.cancel(new ClientClosed()).catch(() => {});
      return exchange.release();
    }
    if (!response.body) return this.#end("complete");
    this.#reader = response.body.getReader();
    this.#wake(); // a subscriber may be waiting at the edge already
  }

  /** Reads the next upstream chunk, one read at a time. */
  #readUpstream(): void {
    if (this.#reading || this.#state !== "running" || !this.#reader) return;
    this.#reading = true;
    this.#reader.read().then(({ done, value }) => {
      if (done) this.#end("complete");
      else if (this.#state === "running") this.#append(value);
    }, (error) => this.#end("failed", this.#exchange!.failure(error))).finally(() => {
      this.#reading = false;
      this.#wake();
    });
  }

  #append(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#heldBytes += chunk.length;
    if (this.#recording) {
      this.#recordedBytes += chunk.length;
      if (this.#recordedBytes > this.#maxRecordBytes) {
        this.#recording = false;
        this.options.onRecordingStopped?.();
      }
    }
    this.#letGo();
  }

  /**
   * Once recording stopped: lets go of the chunks every subscriber has read, and drops the subscribers that
   * trail the one ahead by more than `maxLagBytes` (the slowest first).
   */
  #letGo(): void {
    if (this.#recording) return;
    for (;;) {
      let slowest = Infinity;
      for (const subscriber of this.#subscribers) {
        if (!subscriber.dropped) slowest = Math.min(slowest, subscriber.index);
      }
      while (this.#base < slowest && this.#chunks.length) {
        this.#heldBytes -= this.#chunks.shift()!.length;
        this.#base++;
      }
      if (this.#heldBytes <= this.#maxLagBytes || slowest === Infinity) return;
      for (const subscriber of this.#subscribers) {
        if (subscriber.index === slowest) subscriber.dropped = new FellBehind();
      }
      this.#wake();
    }
  }

  /** Everyone left: the upstream call is cancelled and nothing is stored. */
  #abandon(): void {
    this.#end("failed", new ClientClosed());
    this.#reader?.cancel(new ClientClosed()).catch(() => {});
  }

  #end(state: "complete" | "failed", error?: BridgeError): void {
    if (this.#state !== "running") return;
    this.#state = state;
    this.#error = error;
    this.#exchange?.release();
    this.#finish(state === "complete");
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

  constructor(private readonly options: Omit<FlightOptions, "onRecordingStopped"> = {}) {}

  get(key: string): Flight | undefined {
    return this.#running.get(key);
  }

  /**
   * Starts the flight for `key`. `settle` runs when it is over (to store a complete answer); the flight stays
   * joinable until then, so no request slips between the end of the call and the stored answer — unless its
   * answer grew too large to store: then later requests make their own call.
   */
  start(
    key: string,
    send: () => Promise<UpstreamExchange>,
    settle: (flight: Flight, complete: boolean) => Promise<void>,
  ): Flight {
    const leave = () => this.#running.get(key) === flight && this.#running.delete(key);
    const flight: Flight = new Flight(send, { ...this.options, onRecordingStopped: leave });
    this.#running.set(key, flight);
    const settling: Promise<void> = flight.finished
      .then((complete) => settle(flight, complete))
      // A refresh may have started a newer flight for the key meanwhile: leave that one in place.
      .finally(() => {
        leave();
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
