import { UpstreamProtocolError } from "../src/core/errors.ts";
import { framingOf, headEnd, parseResponseHead } from "../src/upstream/transport/response_head.ts";
import { assertEquals } from "./assert.ts";

const encoder = new TextEncoder();

Deno.test("response head: status, end-to-end headers, framing and keep-alive", () => {
  const raw = encoder.encode(
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n" +
      "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Request-Id: abc\r\nContent-Encoding: gzip\r\n\r\nbody",
  );
  const end = headEnd(raw);
  assertEquals(end, raw.length - 4);
  const head = parseResponseHead(raw.subarray(0, end));
  assertEquals(head.status, 200);
  assertEquals(head.statusText, "OK");
  assertEquals(head.chunked, true);
  assertEquals(head.contentLength, undefined);
  assertEquals(head.encodings, ["gzip"]);
  assertEquals(head.keepAlive, true);
  assertEquals(head.headers, [["content-type", "text/event-stream"], ["x-request-id", "abc"]]);
});

Deno.test("response head: HTTP/1.0 closes by default; Connection: close; content-length", () => {
  const parse = (text: string) => parseResponseHead(encoder.encode(text + "\r\n\r\n"));
  assertEquals(parse("HTTP/1.0 200 OK\r\nContent-Length: 3").keepAlive, false);
  assertEquals(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive").keepAlive, true);
  assertEquals(parse("HTTP/1.1 404 Not Found\r\nConnection: close").keepAlive, false);
  assertEquals(parse("HTTP/1.1 204 No Content").contentLength, undefined);
  assertEquals(parse("HTTP/1.1 200 OK\r\nContent-Length: 42").contentLength, 42);
  assertEquals(headEnd(encoder.encode("HTTP/1.1 200 OK\r\n")), -1);
});

Deno.test("response head: malformed lines are refused", () => {
  for (
    const text of [
      "HTTP/2 200",
      "HTTP/1.1 20 OK",
      "HTTP/1.1 200 OK\r\nno colon",
      "HTTP/1.1 200 OK\r\nContent-Length: -1",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
      "HTTP/1.1 200 OK\r\nX-Name : space before the colon",
      "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded: continuation",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
      "HTTP/1.1 200 OK\r\nX-Bad: a\x00b",
    ]
  ) {
    let failed = false;
    try {
      parseResponseHead(encoder.encode(text + "\r\n\r\n"));
    } catch (error) {
      failed = error instanceof UpstreamProtocolError;
    }
    assertEquals(failed, true, text);
  }
});

Deno.test("response head: Transfer-Encoding is a list whose coding must be chunked; X-Chunked is just a header", () => {
  const parse = (text: string) => parseResponseHead(encoder.encode(text + "\r\n\r\n"));
  const xChunked = parse("HTTP/1.1 200 OK\r\nX-Chunked: chunked\r\nContent-Length: 5");
  assertEquals(xChunked.chunked, false);
  assertEquals(framingOf(xChunked, "GET"), "length");
  assertEquals(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked").chunked, true);
  // Both Transfer-Encoding and Content-Length: chunked wins, and the connection is not reused.
  const both = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5");
  assertEquals([framingOf(both, "GET"), both.keepAlive, both.contentLength], ["chunked", false, undefined]);
  assertEquals(framingOf(parse("HTTP/1.1 200 OK"), "GET"), "close");
  assertEquals(framingOf(parse("HTTP/1.1 200 OK\r\nContent-Length: 9"), "HEAD"), "none");
  assertEquals(framingOf(parse("HTTP/1.1 204 No Content\r\nContent-Length: 9"), "GET"), "none");
  assertEquals(framingOf(parse("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked"), "GET"), "none");
  assertEquals(parse("HTTP/1.1 200 OK\r\nContent-Length: 3, 3").contentLength, 3);
  assertEquals(parse("HTTP/1.1 200 OK\r\nContent-Encoding: identity, gzip").encodings, ["gzip"]);
});
