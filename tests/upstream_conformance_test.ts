/**
 * The upstream client's conformance table (docs/proxy.md#upstream-client): every case against every transport
 * the bridge ships, through the real bridge, against a scripted raw upstream. Each case checks what the client
 * sees and how many times the upstream received the request.
 */
import { brotliCompressSync, gzipSync, zstdCompressSync } from "node:zlib";
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";
import { startTestBridge, type TestBridge } from "./harness.ts";
import { type Reply, response, type Script, ScriptedUpstream } from "./scripted_upstream.ts";

const TRANSPORTS = ["pool", "fetch"] as const;
type Transport = typeof TRANSPORTS[number];
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });
const ANSWER = JSON.stringify({ id: "x", object: "chat.completion", choices: [] });

function conformance(name: string, fn: (transport: Transport) => Promise<void>): void {
  for (const transport of TRANSPORTS) {
    Deno.test(`upstream client (${transport}): ${name}`, () => fn(transport));
  }
}

async function bridgeFor(
  transport: Transport,
  upstream: ScriptedUpstream,
  flags: string[] = [],
): Promise<TestBridge> {
  return await startTestBridge(["--upstream-client", transport, ...flags], { upstreamUrl: upstream.url });
}

const chat = (t: TestBridge, headers?: HeadersInit) => t.post("/v1/chat/completions", CHAT, headers);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers every request with `reply(index)`. */
function scripted(reply: (index: number) => Reply): Script {
  return (_, index) => reply(index);
}

conformance("a POST the upstream read and then dropped is not sent again (502)", async (transport) => {
  await using upstream = new ScriptedUpstream(scripted(() => ({ close: true })));
  await using t = await bridgeFor(transport, upstream);
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  assertEquals((await answer.json()).error.type, "upstream_error");
  assertEquals(upstream.count("POST"), 1);
});

conformance("... and is sent again only within --retry-attempts", async (transport) => {
  await using upstream = new ScriptedUpstream(scripted(() => ({ close: true })));
  await using t = await bridgeFor(transport, upstream, [
    "--retry-attempts",
    "2",
    "--retry-min-interval",
    "50",
  ]);
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  await answer.body?.cancel();
  assertEquals(upstream.count("POST"), 3);
});

conformance("a POST on a reused connection the upstream then drops is not sent twice", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted((index) => index === 0 ? response(200, ANSWER) : { close: true }),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await (await chat(t)).json()).id, "x");
  const second = await chat(t);
  assertEquals(second.status, 502);
  await second.body?.cancel();
  assertEquals(upstream.count("POST"), 2, "the first request, and the second once");
});

conformance("a keep-alive connection the upstream closed while idle is replaced, nothing sent twice", async (
  transport,
) => {
  await using upstream = new ScriptedUpstream(
    scripted(() => ({ write: [response(200, ANSWER)], close: true })),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await chat(t)).status, 200);
  await sleep(50);
  const second = await chat(t);
  assertEquals(second.status, 200);
  await second.body?.cancel();
  assertEquals(upstream.count("POST"), 2);
  assertEquals(upstream.connections, 2);
});

conformance(
  "a GET dropped on a reused connection is retried once, silently, on a new one",
  async (transport) => {
    await using upstream = new ScriptedUpstream((request, index) =>
      index === 1 && request.onConnection === 1 ? { close: true } : response(200, '{"data":[]}')
    );
    await using t = await bridgeFor(transport, upstream);
    assertEquals((await fetch(`${t.url}/v1/models`)).status, 200);
    const second = await fetch(`${t.url}/v1/models`);
    assertEquals(second.status, 200);
    assertEquals(await second.text(), '{"data":[]}');
    assertEquals(upstream.count("GET"), 3, "one silent reconnect, no more");
  },
);

conformance("bytes the upstream writes after a complete response never reach the next client", async (
  transport,
) => {
  const fake = response(200, '{"id":"FAKE"}');
  await using upstream = new ScriptedUpstream(
    scripted((index) =>
      index === 0
        ? { write: [response(200, '{"id":"first"}')], later: { afterMs: 30, bytes: fake } }
        : response(200, '{"id":"second"}')
    ),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await (await chat(t)).json()).id, "first");
  await sleep(150);
  assertEquals((await (await chat(t)).json()).id, "second");
  assertEquals(upstream.count("POST"), 2);
});

conformance("X-Chunked is just a header: the body ends at its content-length", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() => response(200, ANSWER, { "x-chunked": "chunked" })),
  );
  await using t = await bridgeFor(transport, upstream);
  for (let i = 0; i < 2; i++) assertEquals((await (await chat(t)).json()).id, "x");
  // fetch sends every POST on a connection of its own (rule 1); the pool reuses one whose framing was exact.
  assertEquals(upstream.connections, transport === "pool" ? 1 : 2);
});

conformance("Transfer-Encoding with Content-Length: read as chunked, the connection not reused", async (
  transport,
) => {
  const body = `${ANSWER.length.toString(16)}\r\n${ANSWER}\r\n0\r\n\r\n`;
  await using upstream = new ScriptedUpstream(
    scripted(() =>
      `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n${body}`
    ),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await (await chat(t)).json()).id, "x");
  if (transport === "pool") {
    assertEquals((await (await chat(t)).json()).id, "x");
    assertEquals(upstream.connections, 2);
  }
});

conformance("chunk extensions and trailers are accepted", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() =>
      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" +
      `${ANSWER.length.toString(16)};name=value\r\n${ANSWER}\r\n0\r\nx-trailer: 1\r\n\r\n`
    ),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await (await chat(t)).json()).id, "x");
});

conformance("an invalid chunk size is a 502, and the upstream got the request once", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() =>
      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
  );
  await using t = await bridgeFor(transport, upstream);
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  assertEquals((await answer.json()).error.type, "upstream_error");
  assertEquals(upstream.count("POST"), 1);
});

conformance("interim 100 and 103 responses are skipped", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() =>
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + response(200, ANSWER)
    ),
  );
  await using t = await bridgeFor(transport, upstream);
  assertEquals((await (await chat(t)).json()).id, "x");
});

conformance("a 101 is a prompt 502, not a wait until the timeout", async (transport) => {
  await using upstream = new ScriptedUpstream(scripted(() => ({
    write: ["HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"],
    hang: true,
  })));
  await using t = await bridgeFor(transport, upstream, ["--timeout", "20000"]);
  const started = performance.now();
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  await answer.body?.cancel();
  assert(performance.now() - started < 10_000, "long before the 20 s timeout");
});

conformance("HEAD, 204 and 304 pass with their headers and no body", async (transport) => {
  await using upstream = new ScriptedUpstream((request) => {
    if (request.line.startsWith("HEAD")) {
      return "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nx-head: 1\r\n\r\n";
    }
    if (request.line.startsWith("DELETE")) return "HTTP/1.1 204 No Content\r\nx-deleted: yes\r\n\r\n";
    return 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\n\r\n';
  });
  await using t = await bridgeFor(transport, upstream);
  const head = await fetch(`${t.url}/v1/models`, { method: "HEAD" });
  assertEquals([head.status, head.headers.get("x-head"), await head.text()], [200, "1", ""]);
  const deleted = await fetch(`${t.url}/v1/files/file-1`, { method: "DELETE" });
  assertEquals([deleted.status, deleted.headers.get("x-deleted"), await deleted.text()], [204, "yes", ""]);
  const cached = await fetch(`${t.url}/v1/models`, { headers: { "if-none-match": '"v1"' } });
  assertEquals([cached.status, cached.headers.get("etag"), await cached.text()], [304, '"v1"', ""]);
  // All three on one connection: bodiless answers end exactly at their head.
  if (transport === "pool") assertEquals(upstream.connections, 1);
});

conformance("a body framed by the connection closing arrives whole, and is not cached", async (transport) => {
  await using upstream = new ScriptedUpstream(scripted(() => ({
    write: [`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n${ANSWER}`],
    close: true,
  })));
  await using t = await bridgeFor(transport, upstream, [
    "--enable-cache",
    "--cache-dir",
    await Deno.makeTempDir(),
  ]);
  for (let i = 0; i < 2; i++) {
    const answer = await chat(t);
    assertEquals((await answer.json()).id, "x");
    assertEquals(answer.headers.get("x-cache"), "MISS");
    await t.cacheSettled();
  }
  assertEquals(upstream.count("POST"), 2);
});

conformance("an oversize response head is a 502", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() => `HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(1024 * 1024)}\r\ncontent-length: 2\r\n\r\n{}`),
  );
  await using t = await bridgeFor(transport, upstream);
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  await answer.body?.cancel();
  assertEquals(upstream.count("POST"), 1);
});

conformance("an upstream that never sends its head gets a 504 at --timeout", async (transport) => {
  await using upstream = new ScriptedUpstream(
    scripted(() => ({ write: ["HTTP/1.1 200 OK\r\n"], hang: true })),
  );
  await using t = await bridgeFor(transport, upstream, ["--timeout", "1000"]);
  const answer = await chat(t);
  assertEquals(answer.status, 504);
  assertEquals((await answer.json()).error.code, "upstream_timeout");
  assertEquals(upstream.count("POST"), 1);
});

for (
  const [coding, compress] of [
    ["gzip", gzipSync],
    ["br", brotliCompressSync],
    ["zstd", zstdCompressSync],
  ] as const
) {
  conformance(`a ${coding} body is decoded before the think filter and the cache`, async (transport) => {
    const answer = JSON.stringify({
      id: "z",
      choices: [{ index: 0, message: { role: "assistant", content: "<think>hmm</think>Hello" } }],
    });
    const bytes = compress(new TextEncoder().encode(answer));
    await using upstream = new ScriptedUpstream(scripted(() => ({
      write: [
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: ${coding}\r\n` +
        `content-length: ${bytes.length}\r\n\r\n`,
        new Uint8Array(bytes),
      ],
    })));
    await using t = await bridgeFor(transport, upstream, [
      "--enable-cache",
      "--cache-dir",
      await Deno.makeTempDir(),
    ]);
    const first = await chat(t);
    assertEquals(first.headers.get("content-encoding"), null);
    assertEquals((await first.json()).choices[0].message.content, "Hello");
    await t.cacheSettled();
    const hit = await chat(t);
    assertMatch(hit.headers.get("x-cache") ?? "", /^HIT/);
    assertEquals((await hit.json()).choices[0].message.content, "Hello");
    assertEquals(upstream.count("POST"), 1);
  });
}

conformance("a compressed body that decodes past --max-response-size is a 502 before any header", async (
  transport,
) => {
  const bomb = gzipSync(new Uint8Array(8 * 1024 * 1024).fill(32)); // 8 MiB of spaces, ~8 KiB on the wire
  await using upstream = new ScriptedUpstream(scripted(() => ({
    write: [
      `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: ${bomb.length}\r\n\r\n`,
      new Uint8Array(bomb),
    ],
  })));
  await using t = await bridgeFor(transport, upstream, ["--max-response-size", "1MiB"]);
  const answer = await chat(t);
  assertEquals(answer.status, 502);
  assertMatch((await answer.json()).error.message, /--max-response-size/);
});

conformance("a method or header a plugin made invalid is refused before anything is written", async (
  transport,
) => {
  await using upstream = new ScriptedUpstream(scripted(() => response(200, ANSWER)));
  const dir = await Deno.makeTempDir();
  const script = `${dir}/inject.lua`;
  await Deno.writeTextFile(
    script,
    `function HandleServerRequest(request)
  if request.headers["x-mode"] == "method" then request.method = "GET /x HTTP/1.1\\r\\nx-smuggled: 1\\r\\n\\r\\nGET" end
  if request.headers["x-mode"] == "header" then request.headers["x-evil"] = "a\\r\\nx-smuggled: 1" end
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await using t = await bridgeFor(transport, upstream, ["--enable-luajit", "--luajit-script", script]);
  for (const mode of ["method", "header"]) {
    const answer = await chat(t, { "x-mode": mode });
    assertEquals(answer.status, 500, mode);
    await answer.body?.cancel();
  }
  assertEquals(upstream.received.length, 0, "nothing reached the upstream");
  const fine = await chat(t);
  assertEquals(fine.status, 200);
  await fine.body?.cancel();
  await waitFor(() => upstream.received.length === 1);
});

conformance(
  "a compressed stream that expands more than 100 times ends with an error event",
  async (transport) => {
    const bomb = gzipSync(new TextEncoder().encode(`data: ${"a".repeat(16 * 1024 * 1024)}\n\n`));
    await using upstream = new ScriptedUpstream(scripted(() => ({
      write: [
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n" +
        `content-length: ${bomb.length}\r\n\r\n`,
        new Uint8Array(bomb),
      ],
    })));
    await using t = await bridgeFor(transport, upstream);
    const answer = await t.post("/v1/chat/completions", { model: "m", stream: true, messages: [] });
    assertEquals(answer.status, 200);
    const text = await answer.text();
    assertMatch(text, /event: error\ndata: .*compression bomb/);
    assert(text.length < 4 * 1024 * 1024, `stopped early: ${text.length} bytes relayed`);
  },
);
