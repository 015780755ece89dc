/**
 * Single flight across replicas (`--redis-url`). The first replica to take a flight's lease (`SET NX PX`) makes
 * the upstream call and appends the answer's events to a Redis stream named after the lease's token; the other
 * replicas follow that stream live (woken by a pub/sub notice, and by a poll in case a notice is lost), then
 * the answer is in the shared tier for whoever comes later.
 *
 * - The lease is renewed while the call runs; a leader that dies stops renewing it, and a follower that has
 *   sent its client nothing yet takes over (a new lease, a new call); one that has answers with an error event.
 * - The stream holds at most what a stored answer may (`maxBytes`): past it the leader marks it `overflow` and
 *   lets the lease go, so later requests make their own call, as on one replica; followers already reading
 *   it end with a retryable error (or make their own call if they had sent nothing).
 * - Names carry the cache key (a SHA-256) and a random token only: nothing of the request or its credential.
 * Every Redis failure throws RedisUnavailable to the caller, who then flies alone.
 */
import { asBridgeError, BridgeError } from "../core/errors.ts";
import type { StreamFormat } from "../core/answer.ts";
import { asArgument, type RedisLink, RedisUnavailable } from "../redis/link.ts";
import type { Flight, FlightHead } from "./flight.ts";

const LEASE_MS = 5000;
const RENEW_EVERY_MS = 1000;
/** A follower looks at the stream this often even without a notice, and at the lease to see the leader lives. */
const POLL_EVERY_MS = 250;
/** How long a finished flight's stream stays readable for followers that are still on their way. */
const KEEP_FINISHED_MS = 30_000;
const READ_BATCH = 64;

/** Renews a lease if it is still ours; deletes it if asked. */
const LEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;

type EventType = "head" | "data" | "end" | "fail" | "overflow";

/** The leader's hold on a flight: it publishes the flight's answer, and lets go when it is over. */
export interface Lease {
  publish(flight: Flight): void;
  /** Once the answer is stored: followers finish, and the lease goes. */
  finish(complete: boolean): Promise<void>;
  /** Lets the lease go without publishing (another flight serves the request). */
  release(): Promise<void>;
}

/** What a claim found: this replica leads, or another one does (its lease token). */
export type Claim = { role: "leader"; lease: Lease } | { role: "follower"; token: string };

/** Who makes the upstream call for a flight: the port in front of single flight across replicas. */
export interface FlightLeases {
  /** Takes the flight's lease, or names the holder's. Throws RedisUnavailable when it cannot tell. */
  claim(key: string): Promise<Claim>;
  /** Follows another replica's flight: its head and body, or "takeover" when its leader is gone first. */
  follow(key: string, token: string): Promise<FollowedFlight | "takeover">;
}

/** One replica alone: it always leads (its own Flights coalesce its requests), and nobody else follows. */
export const localLeases: FlightLeases = {
  claim: () => Promise.resolve({ role: "leader", lease: NO_LEASE }),
  follow: () => Promise.resolve("takeover"),
};

const NO_LEASE: Lease = { publish() {}, finish: () => Promise.resolve(), release: () => Promise.resolve() };

export class FleetFlights implements FlightLeases {
  constructor(private readonly link: RedisLink, private readonly maxBytes: number) {}

  /** Takes the flight's lease, or names the replica's that holds it. Throws RedisUnavailable. */
  async claim(key: string): Promise<Claim> {
    const name = this.link.key("flight", key);
    for (let attempt = 0; attempt < 3; attempt++) {
      const token = crypto.randomUUID();
      const taken = await this.link.call("flights", (c) => c.set(name, token, { NX: true, PX: LEASE_MS }));
      if (taken === "OK") {
        return { role: "leader", lease: new LeaderLease(this.link, key, token, this.maxBytes) };
      }
      const holder = await this.link.call("flights", (c) => c.get(name));
      if (holder) return { role: "follower", token: holder };
      // It ended between the two commands: try to take it again.
    }
    // The lease changed hands under every attempt: this request flies alone rather than wait.
    throw new RedisUnavailable("flights");
  }

  /** Follows another replica's flight. Resolves with its head, or "takeover" when the leader is gone first. */
  async follow(key: string, token: string): Promise<FollowedFlight | "takeover"> {
    const follower = new Follower(this.link, key, token);
    try {
      return await follower.start();
    } catch (error) {
      follower.close();
      throw error;
    }
  }
}

/** The leader's side: publishes a local flight's answer and keeps the lease alive until it is over. */
export class LeaderLease implements Lease {
  readonly #renewal: ReturnType<typeof setInterval>;
  #published: Promise<void> = Promise.resolve();
  #bytes = 0;
  #overflowed = false;
  #released = false;

  constructor(
    private readonly link: RedisLink,
    private readonly key: string,
    readonly token: string,
    private readonly maxBytes: number,
  ) {
    this.#renewal = setInterval(() => this.#renew(), RENEW_EVERY_MS);
    Deno.unrefTimer(this.#renewal);
  }

  /** Publishes what `flight` answers, as it arrives, for the followers on other replicas. */
  publish(flight: Flight): void {
    const view = flight.subscribe();
    this.#published = (async () => {
      let head: FlightHead;
      try {
        head = await view.head;
      } catch (error) {
        return await this.#append("fail", errorBytes(error));
      }
      const { status, format, closeFramed } = head;
      const headers = [...head.headers];
      await this.#append("head", encoder.encode(JSON.stringify({ status, headers, format, closeFramed })));
      const reader = view.body().getReader();
      try {
        for (let read = await reader.read(); !read.done; read = await reader.read()) {
          this.#bytes += read.value.length;
          if (this.#bytes > this.maxBytes) return await this.#overflow(reader);
          await this.#append("data", read.value);
        }
      } catch (error) {
        await this.#append("fail", errorBytes(error));
      }
    })().catch(() => {
      // Redis failed: the followers see the lease expire and do without this flight.
      view.body().cancel().catch(() => {});
    });
  }

  /** Ends the flight once what was published is written: followers finish, and the lease goes. */
  async finish(complete: boolean): Promise<void> {
    await this.#published;
    if (!this.#overflowed) {
      await this.#append(complete ? "end" : "fail", complete ? new Uint8Array() : errorBytes(undefined))
        .catch(() => {});
    }
    await this.release();
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#renewal);
    await this.link.call("flights", (c) => c.eval(LEASE_SCRIPT, leaseArgs(this.link, this.key, this.token)))
      .catch(() => {});
  }

  async #overflow(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    this.#overflowed = true;
    await this.#append("overflow", new Uint8Array());
    await reader.cancel().catch(() => {});
    await this.release();
  }

  async #append(type: EventType, value: Uint8Array): Promise<void> {
    const stream = streamName(this.link, this.key, this.token);
    await this.link.call("flights", async (c) => {
      const id = c.xAdd(stream, "*", { t: type, v: asArgument(value) });
      const expire = c.pExpire(stream, type === "end" || type === "fail" ? KEEP_FINISHED_MS : LEASE_MS * 6);
      const notice = c.publish(stream, type);
      await Promise.all([id, expire, notice]);
    });
  }

  async #renew(): Promise<void> {
    const args = leaseArgs(this.link, this.key, this.token, String(LEASE_MS));
    await this.link.call("flights", (c) => c.eval(LEASE_SCRIPT, args)).catch(() => {});
  }
}

export interface FollowedFlight {
  readonly head: FlightHead;
  /** The answer, read from the stream as the consumer asks for it. */
  readonly body: ReadableStream<Uint8Array>;
}

interface StreamEvent {
  type: EventType;
  value: Uint8Array;
}

/** One request following another replica's flight. */
class Follower {
  #lastId = "0-0";
  #events: StreamEvent[] = [];
  #wake?: () => void;
  #closed = false;
  #lastLeaseCheck = 0;
  readonly #stream: string;
  readonly #onNotice = () => this.#wake?.();

  constructor(
    private readonly link: RedisLink,
    private readonly key: string,
    private readonly token: string,
  ) {
    this.#stream = streamName(link, key, token);
  }

  async start(): Promise<FollowedFlight | "takeover"> {
    const subscriber = await this.link.subscriber();
    await this.link.call("flights", () => subscriber.subscribe(this.#stream, this.#onNotice));
    const first = await this.#next();
    if (first === "takeover") {
      this.close();
      return "takeover";
    }
    if (first.type === "fail") throw failureOf(first.value);
    if (first.type === "overflow") {
      this.close();
      return "takeover";
    }
    const head = parseHead(first.value);
    if (!head) {
      this.close();
      return "takeover"; // not a head this bridge wrote: no flight to follow
    }
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        for (;;) {
          const event = await this.#next().catch((error) => ({ type: "fail" as const, error }));
          if (event === "takeover") return this.#fail(controller, leaderGone());
          if ("error" in event) return this.#fail(controller, asBridgeError(event.error));
          if (event.type === "data") return controller.enqueue(event.value);
          if (event.type === "end") {
            this.close();
            return controller.close();
          }
          if (event.type === "overflow") return this.#fail(controller, tooLarge());
          if (event.type === "fail") return this.#fail(controller, failureOf(event.value));
        }
      },
      cancel: () => this.close(),
    }, { highWaterMark: 0 });
    return { head, body };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.link.subscriber().then((s) => s.unsubscribe(this.#stream, this.#onNotice)).catch(() => {});
  }

  #fail(controller: ReadableStreamDefaultController<Uint8Array>, error: BridgeError): void {
    this.close();
    controller.error(error);
  }

  /** The next event, waiting for it; "takeover" when the leader's lease is gone without an end. */
  async #next(): Promise<StreamEvent | "takeover"> {
    for (;;) {
      if (this.#events.length) return this.#events.shift()!;
      if (this.#closed) return "takeover";
      const entries = await this.link.call(
        "flights",
        (_, raw) => raw.xRange(this.#stream, `(${this.#lastId}`, "+", { COUNT: READ_BATCH }),
      );
      for (const entry of entries ?? []) {
        this.#lastId = String(entry.id);
        const message = entry.message as unknown as Record<string, Uint8Array>;
        this.#events.push({ type: decoder.decode(message.t) as EventType, value: new Uint8Array(message.v) });
      }
      if (this.#events.length) continue;
      if (performance.now() - this.#lastLeaseCheck > RENEW_EVERY_MS && !(await this.#leaderAlive())) {
        // One last look: the leader may have written its end and let the lease go since the read above.
        const last = await this.link.call(
          "flights",
          (_, raw) => raw.xRange(this.#stream, `(${this.#lastId}`, "+", { COUNT: 1 }),
        );
        if (!last?.length) return "takeover";
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, POLL_EVERY_MS);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  async #leaderAlive(): Promise<boolean> {
    this.#lastLeaseCheck = performance.now();
    const holder = await this.link.call("flights", (c) => c.get(this.link.key("flight", this.key)));
    return holder === this.token;
  }
}

function streamName(link: RedisLink, key: string, token: string): string {
  return link.key("flight", key, token);
}

function leaseArgs(link: RedisLink, key: string, token: string, action = "release") {
  return { keys: [link.key("flight", key)], arguments: [token, action] };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function errorBytes(error: unknown): Uint8Array {
  const failure = asBridgeError(error ?? new Error("the upstream call ended before its answer was whole"));
  const { status, type, code, message } = failure;
  return encoder.encode(JSON.stringify({ status, type, code, message }));
}

/** A head as a leader publishes it, or undefined for bytes that are not one. */
function parseHead(bytes: Uint8Array): FlightHead | undefined {
  try {
    const head = JSON.parse(decoder.decode(bytes));
    const valid = Number.isInteger(head?.status) && head.status >= 100 && head.status <= 599 &&
      Array.isArray(head.headers) &&
      head.headers.every((pair: unknown) =>
        Array.isArray(pair) && pair.length === 2 && pair.every((part) => typeof part === "string")
      ) &&
      (head.format === undefined || head.format === "sse" || head.format === "ndjson");
    if (!valid) return undefined;
    const format: StreamFormat | undefined = head.format;
    return {
      status: head.status,
      headers: new Headers(head.headers),
      format,
      closeFramed: head.closeFramed === true,
    };
  } catch { // not JSON, or a header Headers refuses
    return undefined;
  }
}

function failureOf(bytes: Uint8Array): BridgeError {
  try {
    const { status, type, code, message } = JSON.parse(decoder.decode(bytes));
    if (Number.isInteger(status) && status >= 400 && status <= 599 && typeof message === "string") {
      return new BridgeError(status, String(type), String(code), message);
    }
  } catch {
    // not a failure this bridge wrote
  }
  return leaderGone();
}

function leaderGone(): BridgeError {
  return new BridgeError(
    502,
    "server_error",
    "flight_leader_lost",
    "The replica answering this identical request stopped before the answer was whole: retry it.",
  );
}

function tooLarge(): BridgeError {
  return new BridgeError(
    503,
    "server_error",
    "fell_behind",
    "The identical request this one joined grew too large to share: retry it.",
    { "retry-after": "1" },
  );
}
