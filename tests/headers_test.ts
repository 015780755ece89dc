/** Which headers cross the proxy (RFC 9110 §7.6.1): hop-by-hop never, Connection-listed never, framing anew. */
import {
  clientResponseHeaders,
  connectionListed,
  isForwardedRequestHeader,
  isForwardedResponseHeader,
  upstreamRequestHeaders,
} from "../src/upstream/headers.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("headers: hop-by-hop and framing headers never go upstream; end-to-end ones do", () => {
  for (const name of ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host"]) {
    assert(!isForwardedRequestHeader(name), name);
  }
  for (const name of ["content-length", "accept-encoding", "expect", "proxy-authorization"]) {
    assert(!isForwardedRequestHeader(name), name);
  }
  for (const name of ["content-type", "authorization", "x-request-id", "openai-organization"]) {
    assert(isForwardedRequestHeader(name), name);
  }
});

Deno.test("headers: a header the Connection header lists is hop-by-hop for that message", () => {
  const client = new Headers({
    connection: "keep-alive, X-Private",
    "x-private": "secret",
    "x-public": "ok",
    "content-type": "application/json",
  });
  assertEquals(connectionListed(client), ["keep-alive", "x-private"]);
  assertEquals([...upstreamRequestHeaders(client)], [["content-type", "application/json"], [
    "x-public",
    "ok",
  ]]);
});

Deno.test("headers: the client never sees upstream framing, encoding or hop-by-hop headers", () => {
  const upstream = new Headers({
    "content-type": "text/event-stream",
    "content-length": "12",
    "content-encoding": "gzip",
    "transfer-encoding": "chunked",
    connection: "close",
    "x-request-id": "abc",
  });
  assertEquals([...clientResponseHeaders(upstream)], [["content-type", "text/event-stream"], [
    "x-request-id",
    "abc",
  ]]);
  assert(!isForwardedResponseHeader("content-length"));
  assert(isForwardedResponseHeader("retry-after"));
});
