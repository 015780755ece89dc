/**
 * A pooled HTTP/1.1 client for upstream calls, with the subset of `fetch` the proxy uses.
 *
 * Why not `fetch`: on our machines Deno's fetch costs about 70 µs of CPU per call, and it re-sends a POST that
 * was written on a reused connection the server then dropped (docs/proxy.md has the measurements). The rules
 * this client keeps (RFC 9112, docs/proxy.md#upstream-client):
 * - replay: a request goes again on a new connection only when no byte of it was written, or it is a GET, HEAD
 *   or OPTIONS and no byte of the answer came back; at most once, and only for a reused connection (a server
 *   closing an idle keep-alive connection as we reuse it). Otherwise the failure is the caller's to retry
 *   (`--retry-attempts`) or report.
 * - reuse: a connection goes back to the pool only when its response ended exactly at its framing with no byte
 *   beyond it, and neither side asked to close; while pooled, a pending read ends it if the server closes it or
 *   writes anything.
 * - nothing raw: the request head is validated (request_head.ts); the response head is parsed strictly.
 * It speaks HTTP/1.1 over TCP or TLS and does not use HTTP(S)_PROXY: `--upstream-client fetch` is for that.
 */
import { UpstreamProtocolError, UpstreamUnreachable } from "../../core/errors.ts";
import { headerValue, responseWith } from "../../core/answer.ts";
import { rememberedLately } from "../../core/memo.ts";
import { concatBytes } from "../../core/bytes.ts";
import type { Cancellation } from "../../core/time.ts";
import { bodyStream } from "./body.ts";
import { Connection } from "./connection.ts";
import { decodable, decodeStream, readWhole } from "./decode.ts";
import { encodeRequestHead } from "./request_head.ts";
import { framingOf, headEnd, parseResponseHead, type ResponseHead } from "./response_head.ts";
import type { UpstreamFetch, UpstreamReply, UpstreamRequestInit } from "./types.ts";

export interface Http1ClientOptions {
  /** Idle connections kept per origin. @default 256 */
  maxIdlePerOrigin?: number;
  /** An idle connection is closed after this long. @default 30000 */
  idleTimeoutMs?: number;
  /** The most a whole (non-stream) body may decode to. @default 64 MiB */
  maxResponseBytes?: number;
  /** Extra CA certificates (PEM) for https upstreams, besides the system's and DENO_CERT's. */
  caCerts?: string[];
}

const MAX_HEAD_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);
/** A body up to this size is sent in the same write as the head. */
const COALESCE_BODY_BYTES = 16 * 1024;
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);

/** The connection was lost (closed or reset) during the exchange. */
class ConnectionLost extends Error {}

export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #caCerts?: string[];
  #sweeper?: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(options: Http1ClientOptions = {}) {
    this.#maxIdle = options.maxIdlePerOrigin ?? 256;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
    this.#caCerts = options.caCerts;
  }

  readonly fetch: UpstreamFetch = async (url, init) => {
    const target = parsedUrl(url);
    const head = encodeRequestHead(init.method, target, init.headers, init.body, init.credentials);
    const { cancellation } = init;
    cancellation.throwIfAborted();
    // A reused connection first; if the server had closed it, one more try on a fresh one, when that is safe.
    for (let reuse = true;; reuse = false) {
      const reused = reuse ? this.#take(target.origin) : undefined;
      const connection = reused ?? await this.#connect(target, cancellation);
      const removeAbort = cancellation.onAbort(() => connection.close());
      try {
        await send(connection, head, init.body);
        const response = await readResponseHead(connection);
        return await this.#reply(connection, response, init, removeAbort);
      } catch (error) {
        removeAbort();
        connection.close();
        if (cancellation.aborted) throw cancellation.reason;
        if (!(error instanceof ConnectionLost)) throw error;
        if (reused && replayable(init.method, connection)) continue;
        throw new UpstreamUnreachable(
          connection.written === 0
            ? `the connection closed before the request was sent (${error.message})`
            : `the connection closed after the request was sent, before an answer; not sent again, as the upstream ` +
              `may have processed it (${error.message})`,
          connection.written === 0,
        );
      }
    }
  };

  /** Closes the idle connections; busy ones close when their response ends. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const list of this.#idle.values()) for (const connection of list) connection.close();
    this.#idle.clear();
  }

  #take(origin: string): Connection | undefined {
    const list = this.#idle.get(origin);
    for (let connection = list?.pop(); connection; connection = list?.pop()) {
      if (connection.closed) continue;
      connection.unpark();
      return connection;
    }
    return undefined;
  }

  #release(connection: Connection): void {
    let list = this.#idle.get(connection.origin);
    if (this.#closed || connection.closed || connection.hasUnread || (list?.length ?? 0) >= this.#maxIdle) {
      return connection.close();
    }
    if (!list) this.#idle.set(connection.origin, list = []);
    list.push(connection);
    connection.park((lost) => {
      const from = this.#idle.get(lost.origin);
      const index = from?.indexOf(lost) ?? -1;
      if (index >= 0) from!.splice(index, 1);
    });
    if (this.#sweeper === undefined) {
      this.#sweeper = setInterval(() => this.#sweep(), Math.min(this.#idleTimeoutMs, 5000));
      Deno.unrefTimer(this.#sweeper);
    }
  }

  #sweep(): void {
    const oldest = performance.now() - this.#idleTimeoutMs;
    for (const [origin, list] of this.#idle) {
      const keep = list.filter((connection) => connection.idleSince > oldest || (connection.close(), false));
      if (keep.length) this.#idle.set(origin, keep);
      else this.#idle.delete(origin);
    }
  }

  async #connect(target: URL, cancellation: Cancellation): Promise<Connection> {
    const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
    const tls = target.protocol === "https:";
    const port = Number(target.port) || (tls ? 443 : 80);
    const connecting = tls
      ? Deno.connectTls({ hostname, port, alpnProtocols: ["http/1.1"], caCerts: this.#caCerts })
      : Deno.connect({ hostname, port });
    let removeAbort = () => {};
    const aborted = new Promise<never>((_, reject) => removeAbort = cancellation.onAbort(reject));
    // A socket that opens after the request was abandoned is closed at once.
    connecting.then((conn) => cancellation.aborted && conn.close(), () => {});
    try {
      const conn = await Promise.race([connecting, aborted]);
      if (!tls) (conn as Deno.TcpConn).setNoDelay(true);
      return new Connection(conn, target.origin);
    } catch (error) {
      if (cancellation.aborted) throw error;
      throw new UpstreamUnreachable(error instanceof Error ? error.message : String(error), true);
    } finally {
      removeAbort();
    }
  }

  async #reply(
    connection: Connection,
    head: ResponseHead,
    init: UpstreamRequestInit,
    removeAbort: () => void,
  ): Promise<UpstreamReply> {
    const { status, statusText, headers, encodings } = head;
    const framing = framingOf(head, init.method);
    const finish = (clean: boolean) => {
      removeAbort();
      if (clean && head.keepAlive && framing !== "close") this.#release(connection);
      else connection.close();
    };
    const response = (body: BodyInit | null) => responseWith(body, { status, statusText }, headers);
    if (framing === "none") {
      finish(true);
      return { response: response(null), complete: EMPTY };
    }
    if (!decodable(encodings)) {
      finish(false);
      throw new UpstreamProtocolError(
        `its content-encoding '${encodings.join(", ")}' is not one the bridge decodes`,
      );
    }
    // The common case of a small answer: it arrived with the head, so no stream is needed.
    const early = framing === "length" && !encodings.length
      ? connection.takePushedBack(head.contentLength!)
      : undefined;
    if (early) {
      finish(true);
      return { response: response(early), complete: early };
    }
    if (framing === "length" && head.contentLength! > this.#maxResponseBytes && !isStream(headers)) {
      finish(false);
      throw new UpstreamProtocolError(
        `its body is larger than --max-response-size (${this.#maxResponseBytes} bytes)`,
      );
    }
    const body = bodyStream(connection, framing, head.contentLength, init.cancellation, finish);
    if (!encodings.length) return { response: response(body), closeFramed: framing === "close" };
    // A compressed whole body is decoded before any header goes out, so a bomb is a 502, not a cut answer.
    if (!isStream(headers)) {
      const decoded = await readWhole(body, encodings, this.#maxResponseBytes);
      return { response: response(decoded), complete: decoded, closeFramed: framing === "close" };
    }
    return { response: response(decodeStream(body, encodings)), closeFramed: framing === "close" };
  }
}

/** Whether a content type is an event stream (SSE or NDJSON). */
export function isStreamType(contentType: string | null | undefined): boolean {
  return /^(text\/event-stream|application\/(x-ndjson|jsonl|json-seq))\b/i.test(contentType ?? "");
}

/** An upstream URL parsed; read-only, since the same object serves many requests. */
const parsedUrl: (url: string) => Readonly<URL> = rememberedLately(256, (url) => new URL(url));

function isStream(headers: [string, string][]): boolean {
  return isStreamType(headerValue(headers, "content-type"));
}

/** Whether a request that lost its connection may go again: nothing of it was written, or it is safe to repeat. */
function replayable(method: string, connection: Connection): boolean {
  return connection.written === 0 || (IDEMPOTENT.has(method) && connection.received === 0);
}

async function send(connection: Connection, head: Uint8Array, body: Uint8Array | null): Promise<void> {
  try {
    const small = body !== null && body.length <= COALESCE_BODY_BYTES;
    await connection.write(small ? concatBytes([head, body]) : head);
    if (body !== null && !small) await connection.write(body);
  } catch (error) {
    if (isConnectionLost(error)) throw new ConnectionLost(String((error as Error).message));
    throw error;
  }
}

/** Reads and parses the response head, skipping interim 1xx responses; a 101 is refused. */
async function readResponseHead(connection: Connection): Promise<ResponseHead> {
  let buffer: Uint8Array<ArrayBuffer> = EMPTY;
  let searched = 0;
  let interim = false;
  for (;;) {
    const end = headEnd(buffer, searched);
    if (end >= 0) {
      const head = parseResponseHead(buffer.subarray(0, end));
      buffer = buffer.subarray(end);
      searched = 0;
      if (head.status === 101) {
        throw new UpstreamProtocolError("it switched protocols (101), which the bridge does not proxy");
      }
      if (head.status < 200) { // 100 Continue, 102 Processing, 103 Early Hints: the answer follows
        interim = true;
        continue;
      }
      connection.unread(buffer);
      // After an interim response the connection is not reused: one more thing that could be out of step.
      return interim ? { ...head, keepAlive: false } : head;
    }
    if (buffer.length > MAX_HEAD_BYTES) {
      throw new UpstreamProtocolError("its response head is larger than 64 KiB");
    }
    searched = buffer.length;
    let bytes: Uint8Array<ArrayBuffer> | null;
    try {
      bytes = await connection.read();
    } catch (error) {
      if (isConnectionLost(error)) throw new ConnectionLost((error as Error).message);
      throw error;
    }
    if (bytes === null) {
      if (buffer.length === 0 && !interim) throw new ConnectionLost("closed by the upstream");
      throw new UpstreamProtocolError("it closed the connection in the middle of the response head");
    }
    buffer = buffer.length === 0 ? bytes : concatBytes([buffer, bytes]);
  }
}

function isConnectionLost(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.UnexpectedEof || error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected;
}
