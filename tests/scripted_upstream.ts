/**
 * A raw-TCP (or TLS) upstream whose every answer is scripted byte by byte, to act as a hostile or merely
 * broken server would: drop the connection after reading a request, write extra bytes, lie about framing. It
 * counts what it received, so a test can tell how many times one request reached it.
 */
import { concatBytes } from "../src/core/bytes.ts";

export interface Received {
  /** The request line, such as `POST /v1/chat/completions HTTP/1.1`. */
  readonly line: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** The body's bytes, exactly as they arrived. */
  readonly raw: Uint8Array;
  /** Which connection it came on (0, 1, ...) and its index on that connection. */
  readonly connection: number;
  readonly onConnection: number;
}

/** What the script does with a request: raw bytes to write (then it waits for the next request), or a plan. */
export type Reply = string | Uint8Array | {
  write?: (string | Uint8Array)[];
  /** Close the connection after writing (or at once, with nothing to write). */
  close?: boolean;
  /** Write this much later on the same connection, whatever happens meanwhile. */
  later?: { afterMs: number; bytes: string | Uint8Array };
  /** Never answer (the connection stays open until the test ends). */
  hang?: boolean;
  /** Told how many bytes each write put on the wire. */
  onWrite?: (bytes: number) => void;
};

export type Script = (request: Received, index: number) => Reply | Promise<Reply>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class ScriptedUpstream implements AsyncDisposable {
  readonly received: Received[] = [];
  connections = 0;
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #serving: Promise<void>;

  constructor(readonly script: Script, tls?: { cert: string; key: string }) {
    this.#listener = tls
      ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#serving = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** How many requests arrived whose request line starts with `prefix` (such as `POST /v1/chat`). */
  count(prefix: string): number {
    return this.received.filter((request) => request.line.startsWith(prefix)).length;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      this.#conns.add(conn);
      this.#serve(conn, this.connections++).catch(() => {}).finally(() => {
        this.#conns.delete(conn);
        try {
          conn.close();
        } catch {
          // closed already
        }
      });
    }
  }

  async #serve(conn: Deno.Conn, connection: number): Promise<void> {
    let buffer: Uint8Array = new Uint8Array(0);
    const buf = new Uint8Array(64 * 1024);
    for (let onConnection = 0;; onConnection++) {
      // Read one request: head, then a content-length or chunked body.
      let headEnd = -1;
      while ((headEnd = find(buffer, "\r\n\r\n")) < 0) {
        const n = await conn.read(buf);
        if (n === null) return;
        buffer = concatBytes([buffer, buf.subarray(0, n)]);
      }
      const head = decoder.decode(buffer.subarray(0, headEnd));
      buffer = buffer.subarray(headEnd + 4);
      const [line, ...fields] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const field of fields) {
        const colon = field.indexOf(":");
        headers[field.slice(0, colon).trim().toLowerCase()] = field.slice(colon + 1).trim();
      }
      let body: Uint8Array = new Uint8Array(0);
      if (headers["content-length"]) {
        const length = Number(headers["content-length"]);
        while (buffer.length < length) {
          const n = await conn.read(buf);
          if (n === null) return;
          buffer = concatBytes([buffer, buf.subarray(0, n)]);
        }
        body = buffer.subarray(0, length);
        buffer = buffer.subarray(length);
      } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
        let end: number;
        while ((end = find(buffer, "0\r\n\r\n")) < 0) {
          const n = await conn.read(buf);
          if (n === null) return;
          buffer = concatBytes([buffer, buf.subarray(0, n)]);
        }
        body = buffer.subarray(0, end);
        buffer = buffer.subarray(end + 5);
      }
      const request = {
        line,
        headers,
        body: decoder.decode(body),
        raw: body.slice(),
        connection,
        onConnection,
      };
      this.received.push(request);
      const reply = await this.script(request, this.received.length - 1);
      const plan = typeof reply === "string" || reply instanceof Uint8Array ? { write: [reply] } : reply;
      for (const part of plan.write ?? []) {
        const bytes = typeof part === "string" ? encoder.encode(part) : part;
        for (let offset = 0; offset < bytes.length;) {
          const n = await conn.write(bytes.subarray(offset));
          offset += n;
          plan.onWrite?.(n);
        }
      }
      if (plan.later) {
        const { afterMs, bytes } = plan.later;
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          conn.write(typeof bytes === "string" ? encoder.encode(bytes) : bytes).catch(() => {});
        }, afterMs);
        this.#timers.add(timer);
      }
      if (plan.hang) await new Promise(() => {});
      if (plan.close) return;
    }
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    await this.#serving;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A whole HTTP/1.1 response with a content-length. */
export function response(status: number, body: string, headers: Record<string, string> = {}): string {
  const fields = Object.entries({ "content-type": "application/json", ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`).join("");
  return `HTTP/1.1 ${status} X\r\n${fields}content-length: ${encoder.encode(body).length}\r\n\r\n${body}`;
}

function find(bytes: Uint8Array, text: string): number {
  const needle = encoder.encode(text);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
