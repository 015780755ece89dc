/**
 * A pooled HTTP/1.1 client for upstream calls, with the subset of `fetch` the proxy uses.
 *
 * Why not `fetch`: on our machines Deno's fetch costs about 70 µs of CPU per call, which held a passthrough to
 * 0.26x of the upstream's own request rate; this client over `Deno.connect` keeps connections alive and parses
 * responses in a few µs (see docs/performance.md). It speaks HTTP/1.1 only, over TCP or TLS, and does not use
 * HTTP(S)_PROXY: `--upstream-client fetch` is there for such setups.
 */
import { connectionListed, CREDENTIAL_HEADERS, isForwardedRequestHeader } from "../headers.ts";
import { concatBytes } from "../../core/bytes.ts";
import type { Cancellation } from "../../core/time.ts";
import { ChunkedDecoder } from "./chunked.ts";
import { Connection } from "./connection.ts";
import { headEnd, parseResponseHead, type ResponseHead } from "./response_head.ts";

export interface UpstreamRequestInit {
  method: string;
  /** The client's headers: the transport sends only the end-to-end ones (upstream/headers.ts). */
  headers: Headers;
  body: Uint8Array<ArrayBuffer> | null;
  cancellation: Cancellation;
  /**
   * The upstream credentials: undefined passes the client's own on; null removes them; a string is sent as the
   * `Authorization` value in their place (shared mode).
   */
  credentials?: string | null;
}

/** An upstream response; its body is decoded, and its headers are the end-to-end ones to pass on. */
export interface UpstreamReply {
  readonly response: Response;
  /**
   * The whole body, when it arrived with the head: the proxy can look at it (the think filter checks it for
   * tags) and send it on without reading the response's stream.
   */
  readonly complete?: Uint8Array<ArrayBuffer>;
}

/** Sends one request upstream. */
export type UpstreamFetch = (url: string, init: UpstreamRequestInit) => Promise<UpstreamReply>;

export interface Http1ClientOptions {
  /** Idle connections kept per origin. @default 256 */
  maxIdlePerOrigin?: number;
  /** An idle connection is closed after this long. @default 30000 */
  idleTimeoutMs?: number;
}

const MAX_HEAD_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);
const NO_BODY_STATUSES = new Set([204, 205, 304]);
/** A body up to this size is sent in the same write as the head. */
const COALESCE_BODY_BYTES = 16 * 1024;

/** A reused connection turned out to be closed by the server before our request: safe to send again. */
class StaleConnection extends Error {}

export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  #sweeper?: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(options: Http1ClientOptions = {}) {
    this.#maxIdle = options.maxIdlePerOrigin ?? 256;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  }

  readonly fetch: UpstreamFetch = async (url, init) => {
    const target = new URL(url);
    const head = encodeRequestHead(init.method, target, init.headers, init.body, init.credentials);
    const { cancellation, body } = init;
    cancellation.throwIfAborted();
    for (;;) {
      const reused = this.#idle.get(target.origin)?.pop();
      const connection = reused ?? await this.#connect(target, cancellation);
      const removeAbort = cancellation.onAbort(() => connection.close());
      try {
        try {
          const small = body !== null && body.length <= COALESCE_BODY_BYTES;
          await connection.write(small ? concatBytes([head, body]) : head);
          if (body !== null && !small) await connection.write(body);
        } catch (error) {
          throw reused && isConnectionLost(error) ? new StaleConnection() : error;
        }
        const response = await readResponseHead(connection, reused !== undefined);
        return this.#response(connection, response, init.method, cancellation, removeAbort);
      } catch (error) {
        removeAbort();
        connection.close();
        if (cancellation.aborted) throw cancellation.reason;
        // The server closed an idle connection as we reused it: it never saw the request, so send it again.
        if (error instanceof StaleConnection) continue;
        throw error;
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

  #release(connection: Connection): void {
    let list = this.#idle.get(connection.origin);
    if (this.#closed || connection.closed || connection.hasPending || (list?.length ?? 0) >= this.#maxIdle) {
      return connection.close();
    }
    connection.idleSince = performance.now();
    if (!list) this.#idle.set(connection.origin, list = []);
    list.push(connection);
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
      ? Deno.connectTls({ hostname, port, alpnProtocols: ["http/1.1"] })
      : Deno.connect({ hostname, port });
    let removeAbort = () => {};
    const aborted = new Promise<never>((_, reject) => removeAbort = cancellation.onAbort(reject));
    // A socket that opens after the request was abandoned is closed at once.
    connecting.then((conn) => cancellation.aborted && conn.close(), () => {});
    try {
      const conn = await Promise.race([connecting, aborted]);
      if (!tls) (conn as Deno.TcpConn).setNoDelay(true);
      return new Connection(conn, target.origin);
    } finally {
      removeAbort();
    }
  }

  #response(
    connection: Connection,
    head: ResponseHead,
    method: string,
    cancellation: Cancellation,
    removeAbort: () => void,
  ): UpstreamReply {
    const { status, statusText, headers, encoding } = head;
    const noBody = method === "HEAD" || NO_BODY_STATUSES.has(status) || head.contentLength === 0;
    // Without a length or chunked coding, the body ends when the server closes: the connection is spent.
    const reusable = head.keepAlive && (noBody || head.chunked || head.contentLength !== undefined);
    const finish = (clean: boolean) => {
      removeAbort();
      if (clean && reusable) this.#release(connection);
      else connection.close();
    };
    const init = { status, statusText, headers };
    if (noBody) {
      finish(true);
      return { response: new Response(null, init), complete: EMPTY };
    }
    if (encoding && encoding !== "identity" && encoding !== "gzip" && encoding !== "deflate") {
      finish(false);
      throw new TypeError(`Upstream answered with an unsupported content-encoding '${encoding}'`);
    }
    // The common case of a small answer: it arrived with the head, so no stream is needed.
    const early = head.contentLength !== undefined && !encoding
      ? connection.takePending(head.contentLength)
      : undefined;
    if (early) {
      finish(true);
      return { response: new Response(early, init), complete: early };
    }
    let body = bodyStream(connection, head, cancellation, finish);
    if (encoding === "gzip" || encoding === "deflate") {
      // Like fetch, hand out the decoded body.
      body = body.pipeThrough(new DecompressionStream(encoding) as TransformStream<Uint8Array, Uint8Array>);
    }
    return { response: new Response(body, init) };
  }
}

/** The response body as it arrives, de-chunked; `finish(clean)` is called once when it ends. */
function bodyStream(
  connection: Connection,
  head: ResponseHead,
  cancellation: Cancellation,
  finish: (clean: boolean) => void,
): ReadableStream<Uint8Array> {
  const decoder = head.chunked ? new ChunkedDecoder() : undefined;
  let remaining = head.contentLength ?? Infinity;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const bytes = await connection.read();
          if (bytes === null) {
            if (decoder || remaining !== Infinity) {
              throw new TypeError("Upstream closed the connection mid-body");
            }
            finish(false);
            return controller.close();
          }
          let ended = false;
          if (decoder) {
            for (const piece of decoder.push(bytes)) controller.enqueue(piece);
            if (decoder.done) {
              connection.unread(decoder.leftover);
              ended = true;
            }
          } else {
            const take = Math.min(remaining, bytes.length);
            controller.enqueue(take === bytes.length ? bytes : bytes.subarray(0, take));
            remaining -= take;
            if (remaining === 0) {
              connection.unread(bytes.subarray(take));
              ended = true;
            }
          }
          if (ended) {
            finish(true);
            return controller.close();
          }
          if ((controller.desiredSize ?? 0) <= 0) return;
        }
      } catch (error) {
        finish(false);
        controller.error(cancellation.aborted ? cancellation.reason : error);
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}

/** Reads and parses the response head, skipping interim 1xx responses. */
async function readResponseHead(connection: Connection, reused: boolean): Promise<ResponseHead> {
  let buffer: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  let searched = 0;
  for (;;) {
    const end = headEnd(buffer, searched);
    if (end >= 0) {
      const head = parseResponseHead(buffer.subarray(0, end));
      buffer = buffer.subarray(end);
      searched = 0;
      if (head.status >= 100 && head.status < 200) continue; // 100 Continue, 103 Early Hints
      connection.unread(buffer);
      return head;
    }
    if (buffer.length > MAX_HEAD_BYTES) throw new TypeError("Upstream response head is larger than 64 KiB");
    searched = buffer.length;
    let bytes: Uint8Array<ArrayBuffer> | null;
    try {
      bytes = await connection.read();
    } catch (error) {
      if (reused && buffer.length === 0 && isConnectionLost(error)) throw new StaleConnection();
      throw error;
    }
    if (bytes === null) {
      if (reused && buffer.length === 0) throw new StaleConnection();
      throw new TypeError("Upstream closed the connection before sending a response");
    }
    buffer = buffer.length === 0 ? bytes : concatBytes([buffer, bytes]);
  }
}

function isConnectionLost(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.UnexpectedEof || error instanceof Deno.errors.ConnectionAborted;
}

const encoder = new TextEncoder();
const NON_ASCII = /[^ -~\t\r\n]/;

function encodeRequestHead(
  method: string,
  target: URL,
  headers: Headers,
  body: Uint8Array | null,
  credentials: string | null | undefined,
): Uint8Array {
  let head = `${method} ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\n`;
  if (credentials) head += `authorization: ${credentials}\r\n`;
  const keepCredentials = credentials === undefined;
  const listed = headers.has("connection") ? connectionListed(headers) : [];
  // forEach, not for-of: Headers' iterator costs three times as much per request.
  headers.forEach((value, name) => {
    if (!isForwardedRequestHeader(name) || listed.includes(name)) return;
    if (keepCredentials || !CREDENTIAL_HEADERS.has(name)) head += `${name}: ${value}\r\n`;
  });
  if (body !== null || method === "POST" || method === "PUT" || method === "PATCH") {
    head += `content-length: ${body?.length ?? 0}\r\n`;
  }
  head += "\r\n";
  // Header values are Latin-1 byte strings; TextEncoder would turn bytes above 0x7f into two.
  if (!NON_ASCII.test(head)) return encoder.encode(head);
  return Uint8Array.from(head, (char) => char.charCodeAt(0) & 0xff);
}
