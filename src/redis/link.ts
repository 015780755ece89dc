/**
 * The bridge's connection to the shared Redis (`--redis-url`). Every use of Redis goes through `call`, which
 * gives up on a command after `COMMAND_DEADLINE_MS` and throws `RedisUnavailable`: each caller then does what a
 * lone replica does (memory, its own limiter, its own flights), so an outage or a slow Redis never fails a
 * request. Whether Redis is up is known from a PING every second; it is logged each way and exported as
 * `bridge_redis_up`. Reconnection is the client's own (node-redis), with backoff; nothing queues while it is down.
 */
import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "redis";
import type { RedisSettings } from "../config/settings.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";

/** A command slower than this counts as Redis being down: the request goes on without it. */
export const COMMAND_DEADLINE_MS = 50;
/**
 * The deadline of commands off the request's hot path (async jobs, key verdicts): nobody waits on them per
 * request, and a fresh process's first command (cold code) can take longer than COMMAND_DEADLINE_MS.
 */
export const BACKGROUND_DEADLINE_MS = 1000;
const HEALTH_EVERY_MS = 1000;
const CONNECT_WAIT_MS = 1000;
/**
 * The main connection is closed (and made again) after this long without a byte from Redis: commands left
 * unanswered by a frozen server are failed then, rather than held forever. The PING each second keeps a healthy
 * connection from ever being this quiet.
 */
const SILENT_SOCKET_MS = 5000;

export type Client = ReturnType<typeof makeClient>;
/** Redis with its bulk strings read as bytes (answers, flight events). */
export type BytesClient = ReturnType<typeof bytesView>;

/** Bytes as Redis takes them (a Buffer over the same memory, not a copy). */
export function asArgument(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** Redis did not answer in time, or is not connected: go on without it. */
export class RedisUnavailable extends Error {
  constructor(readonly use: string, cause?: unknown) {
    super(`redis unavailable for ${use}${cause ? `: ${(cause as Error).message ?? cause}` : ""}`);
  }
}

function bytesView(client: Client) {
  return client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}

export class RedisLink {
  #up = false;
  #closed = false;
  #health?: ReturnType<typeof setInterval>;
  #subscriber?: Client;
  #blocking?: Client;
  readonly #onUp: (() => void)[] = [];
  readonly bytes: BytesClient;

  private constructor(
    readonly client: Client,
    readonly settings: RedisSettings,
    private readonly metrics: BridgeMetrics,
    private readonly log: Logger,
  ) {
    this.bytes = bytesView(client);
    metrics.redisUp.set(0);
  }

  /** Connects (waiting at most a second: a Redis that is down at start is joined once it is up). */
  static async open(settings: RedisSettings, metrics: BridgeMetrics, log: Logger): Promise<RedisLink> {
    const url = new URL(settings.url);
    if (url.password) log.addSecrets([decodeURIComponent(url.password), settings.url]);
    const client = makeClient(settings.url, COMMAND_DEADLINE_MS, SILENT_SOCKET_MS);
    const link = new RedisLink(client, settings, metrics, log);
    // node-redis reports every failed reconnect here; the link logs only the changes of state.
    client.on("error", () => link.#setUp(false));
    client.on("end", () => link.#setUp(false));
    client.connect().catch(() => {});
    await link.#ready(client, "connect").catch(() => {});
    await link.#check();
    link.#health = setInterval(() => link.#check(), HEALTH_EVERY_MS);
    Deno.unrefTimer(link.#health);
    if (!link.#up) log.warn("redis is not reachable yet: this replica works alone until it is", where(url));
    return link;
  }

  get up(): boolean {
    return this.#up;
  }

  /** A key (or channel) name under the fleet's prefix. */
  key(...parts: string[]): string {
    return this.settings.prefix + parts.join(":");
  }

  /**
   * Runs `command` if Redis is up; a failure or a missed deadline throws RedisUnavailable (and counts). The
   * deadline is COMMAND_DEADLINE_MS unless the caller, off the request's hot path, can wait longer.
   */
  async call<T>(
    use: string,
    command: (client: Client, bytes: BytesClient) => Promise<T>,
    deadlineMs = COMMAND_DEADLINE_MS,
  ): Promise<T> {
    if (!this.#up) throw new RedisUnavailable(use);
    try {
      return await withinDeadline(command(this.client, this.bytes), deadlineMs);
    } catch (error) {
      this.metrics.redisFailures.inc({ use });
      // A timeout or a lost connection: stop using Redis until a PING says it is back.
      if (!isReplyError(error)) this.#setUp(false);
      throw new RedisUnavailable(use, error);
    }
  }

  /** A connection for pub/sub (a subscribed connection takes no other command). */
  subscriber(): Promise<Client> {
    this.#subscriber ??= this.#extra(COMMAND_DEADLINE_MS);
    return this.#ready(this.#subscriber, "subscribe");
  }

  /**
   * Listens on a channel for as long as the link lives: subscribes as soon as Redis can be reached (at start it
   * may not be), trying again each second; node-redis renews the subscription after a reconnect. `subscribed` is
   * called once the subscription holds: what was published before it was missed, and may be read then.
   */
  listen(channel: string, listener: (message: string) => void, subscribed?: () => void): void {
    const attempt = async () => {
      try {
        await withinDeadline((await this.subscriber()).subscribe(channel, listener));
        subscribed?.();
        return true;
      } catch {
        return false;
      }
    };
    attempt().then((subscribed) => {
      if (subscribed) return;
      const retry = setInterval(async () => {
        if (this.#closed || await attempt()) clearInterval(retry);
      }, HEALTH_EVERY_MS);
      Deno.unrefTimer(retry);
    });
  }

  /** A connection for blocking reads and long scans: no command deadline, and no request's command waits behind it. */
  blocking(): Promise<Client> {
    this.#blocking ??= this.#extra(undefined);
    return this.#ready(this.#blocking, "blocking");
  }

  #extra(deadlineMs: number | undefined): Client {
    const client = makeClient(this.settings.url, deadlineMs);
    client.on("error", () => {});
    client.connect().catch(() => {});
    return client;
  }

  /** The client once it is connected (waiting a second at most), else RedisUnavailable. */
  async #ready(client: Client, use: string): Promise<Client> {
    const until = performance.now() + CONNECT_WAIT_MS;
    while (!client.isReady && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
    if (!client.isReady) throw new RedisUnavailable(use);
    return client;
  }

  /**
   * Drops the connections at once, with whatever they still wait for: a graceful close would wait for replies
   * a frozen Redis never sends, and keep the process from ending. (Everything worth keeping was written before:
   * the stores close first.)
   */
  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#health);
    for (const client of [this.#subscriber, this.#blocking, this.client]) {
      try {
        client?.destroy();
      } catch {
        // not connected: nothing to drop
      }
    }
    return Promise.resolve();
  }

  async #check(): Promise<void> {
    if (this.#closed) return;
    let ok = false;
    try {
      ok = this.client.isReady && (await withinDeadline(this.client.ping())) === "PONG";
    } catch {
      ok = false;
    }
    const wasUp = this.#up;
    this.#setUp(ok);
    if (ok && !wasUp) await this.#warnAboutEviction();
  }

  #setUp(up: boolean): void {
    if (up === this.#up || this.#closed) return;
    this.#up = up;
    this.metrics.redisUp.set(up ? 1 : 0);
    const url = new URL(this.settings.url);
    if (up) this.log.info("redis is up: sharing with the other replicas", where(url));
    else this.log.warn("redis is down or slow: this replica works alone until it is back", where(url));
    if (up) { for (const callback of this.#onUp) callback(); }
  }

  /** Runs `callback` each time Redis comes up (at start too, if it is up then): to catch up on what was missed. */
  onUp(callback: () => void): void {
    this.#onUp.push(callback);
    if (this.#up) callback();
  }

  /** Pending jobs and leases carry no TTL: a policy that evicts such keys could lose them. */
  async #warnAboutEviction(): Promise<void> {
    try {
      const policy = (await this.client.configGet("maxmemory-policy"))["maxmemory-policy"];
      if (policy?.startsWith("allkeys-")) {
        this.log.warn(
          "redis maxmemory-policy evicts keys without a TTL: pending async jobs may be lost; use volatile-lru",
          { policy },
        );
      }
    } catch {
      // A managed Redis may refuse CONFIG: nothing to check.
    }
  }
}

function makeClient(url: string, deadlineMs: number | undefined, socketTimeout?: number) {
  return createClient({
    url,
    disableOfflineQueue: true,
    commandOptions: deadlineMs ? { timeout: deadlineMs } : undefined,
    socket: {
      connectTimeout: 2000,
      socketTimeout,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
    },
  });
}

/**
 * The command's result, or a rejection once `ms` passed. node-redis's own command timeout stops at the write: a
 * server that takes the command and never answers would hold the request forever.
 */
async function withinDeadline<T>(command: Promise<T>, ms = COMMAND_DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  command.catch(() => {}); // it may still fail after the deadline: nobody listens then
  try {
    return await Promise.race([command, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function isReplyError(error: unknown): boolean {
  return (error as Error)?.constructor?.name === "ErrorReply";
}

/** Where Redis is, for a log line: host and port, never the userinfo. */
function where(url: URL): { redis: string } {
  return { redis: `${url.protocol}//${url.host}${url.pathname}` };
}
