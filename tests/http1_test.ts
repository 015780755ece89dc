import { UpstreamUnreachable } from "../src/core/errors.ts";
/** The pooled HTTP/1.1 client against a raw TCP server whose wire bytes each test writes itself. */
import { Http1Client } from "../src/upstream/transport/http1.ts";
import { Cancellation, sleep } from "../src/core/time.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A server that answers each request on a connection with the next of `answers` (bytes or a writer). */
type Answer = string | ((conn: Deno.Conn) => Promise<void>);

class RawServer {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  connections = 0;
  readonly requests: string[] = [];
  readonly #tasks: Promise<void>[] = [];
  readonly #open = new Set<Deno.Conn>();

  constructor(readonly answers: Answer[], readonly closeAfterEach = false) {
    this.#tasks.push(this.#accept());
  }

  get url(): string {
    return `http://127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
  }

  async #accept(): Promise<void> {
    for await (const conn of this.listener) {
      this.connections++;
      this.#open.add(conn);
      this.#tasks.push(this.#serve(conn));
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        const text = decoder.decode(buffer.subarray(0, n));
        this.requests.push(text);
        const answer = this.answers.shift() ?? "HTTP/1.1 500 No More\r\ncontent-length: 0\r\n\r\n";
        if (typeof answer === "string") await conn.write(encoder.encode(answer));
        else await answer(conn);
        if (this.closeAfterEach) break;
      }
    } catch {
      // the client went away
    } finally {
      this.#open.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  async close(): Promise<void> {
    try {
      this.listener.close();
    } catch { /* closed */ }
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await Promise.allSettled(this.#tasks);
  }
}

const init = (method = "GET", body: string | null = null) => ({
  method,
  headers: new Headers({ "x-test": "1", connection: "keep-alive", "keep-alive": "5" }),
  body: body === null ? null : encoder.encode(body),
  cancellation: new Cancellation(),
});

Deno.test("http1: small answers come back complete and the connection is reused", async () => {
  const server = new RawServer([
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    "HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-extra: yes\r\n\r\nhello",
  ]);
  const client = new Http1Client();
  try {
    const first = await client.fetch(`${server.url}/a?b=1`, init("POST", '{"q":1}'));
    assertEquals(first.response.status, 200);
    assertEquals(first.complete?.length, 2);
    assertEquals(await first.response.text(), "{}");
    const { response: second } = await client.fetch(`${server.url}/c`, init());
    assertEquals(second.status, 201);
    assertEquals(second.headers.get("x-extra"), "yes");
    assertEquals(second.headers.get("content-length"), null);
    assertEquals(await second.text(), "hello");
    assertEquals(server.connections, 1);
    const [request] = server.requests;
    assert(request.startsWith("POST /a?b=1 HTTP/1.1\r\nhost: 127.0.0.1:"), request);
    assert(request.includes("x-test: 1\r\n") && request.includes("content-length: 7\r\n"), request);
    assert(!request.includes("keep-alive: 5"), "hop-by-hop header was not sent");
    assert(request.endsWith('\r\n\r\n{"q":1}'), request);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: a chunked stream is handed out as it arrives, then the connection is reused", async () => {
  const server = new RawServer([
    async (conn) => {
      await conn.write(
        encoder.encode(
          "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        ),
      );
      for (const piece of ["data: 1\n\n", "data: 2\n\n"]) {
        await conn.write(encoder.encode(`${piece.length.toString(16)}\r\n${piece}\r\n`));
        await sleep(150);
      }
      await conn.write(encoder.encode("0\r\n\r\n"));
    },
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
  ]);
  const client = new Http1Client();
  try {
    const start = performance.now();
    const { response } = await client.fetch(`${server.url}/stream`, init());
    const arrivals: [string, number][] = [];
    for await (const chunk of response.body!) {
      arrivals.push([decoder.decode(chunk), performance.now() - start]);
    }
    assertEquals(arrivals.map(([text]) => text).join(""), "data: 1\n\ndata: 2\n\n");
    assert(arrivals[0][1] < 100, `first chunk after ${arrivals[0][1]} ms`);
    assertEquals(await (await client.fetch(`${server.url}/next`, init())).response.text(), "ok");
    assertEquals(server.connections, 1);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: a reused connection the server closed meanwhile is replaced transparently", async () => {
  const server = new RawServer([
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none",
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo",
  ], true);
  const client = new Http1Client();
  try {
    assertEquals(await (await client.fetch(`${server.url}/`, init())).response.text(), "one");
    await sleep(50); // the server has closed its end by now
    assertEquals(await (await client.fetch(`${server.url}/`, init("POST", "again"))).response.text(), "two");
    assertEquals(server.connections, 2);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: 100 Continue is skipped; a body without length ends at close", async () => {
  const server = new RawServer([
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
  ], true);
  const client = new Http1Client();
  try {
    const { response } = await client.fetch(`${server.url}/`, init());
    assertEquals(await response.text(), "until the end");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: gzip bodies are decoded; a body cut short is an error", async () => {
  const zipped = new Uint8Array(
    await new Response(new Blob(["zipped text"]).stream().pipeThrough(new CompressionStream("gzip")))
      .arrayBuffer(),
  );
  const server = new RawServer([
    async (conn) => {
      await conn.write(
        encoder.encode(
          `HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${zipped.length}\r\n\r\n`,
        ),
      );
      await conn.write(zipped);
    },
    "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
  ]);
  const client = new Http1Client();
  try {
    const { response: gz } = await client.fetch(`${server.url}/gz`, init());
    assertEquals(gz.headers.get("content-encoding"), null);
    assertEquals(await gz.text(), "zipped text");
    const { response: cut } = await client.fetch(`${server.url}/cut`, init());
    const reading = cut.text();
    await sleep(20);
    await server.close();
    await assertRejects(() => reading);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: cancelling closes the connection and rejects with the reason", async () => {
  let sawEnd = false;
  const server = new RawServer([
    async (conn) => {
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwait\r\n"));
      const n = await conn.read(new Uint8Array(16)).catch(() => null);
      sawEnd = n === null;
    },
  ]);
  const client = new Http1Client();
  try {
    const request = init();
    const { response } = await client.fetch(`${server.url}/`, request);
    const reader = response.body!.getReader();
    assertEquals(decoder.decode((await reader.read()).value), "wait");
    const next = reader.read();
    request.cancellation.abort(new Error("client left"));
    await assertRejects(() => next, (error) => assertEquals((error as Error).message, "client left"));
    await sleep(50);
    assert(sawEnd, "server saw the connection close");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http1: connection refused is an error, not a hang", async () => {
  const client = new Http1Client();
  await assertRejects(() => client.fetch("http://127.0.0.1:9/", init()), (error) => {
    assert(error instanceof UpstreamUnreachable && /refused/i.test(error.message), String(error));
  });
  client.close();
});
