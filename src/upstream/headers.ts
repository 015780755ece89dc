/**
 * Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and never
 * cross; neither do the headers that describe a body the proxy re-frames. The predicates are shared by both
 * transports: the pooled client applies them while it encodes and parses, without copying `Headers`.
 */

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Not forwarded upstream: the transport sets host and length, and negotiates its own compression. */
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "content-length", "accept-encoding", "expect"]);

/**
 * Not passed back to the client: the transport has already decoded the body (Deno's fetch keeps
 * `content-encoding` and the encoded `content-length`, which would make the client decode twice or wait
 * for missing bytes), and the server frames the body anew.
 */
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, "content-encoding", "content-length"]);

export { CREDENTIAL_HEADERS } from "../core/request.ts";

/** Whether a client request header (lower-case name) is sent upstream. */
export function isForwardedRequestHeader(name: string): boolean {
  return !REQUEST_DROPPED.has(name);
}

/** Whether an upstream response header (lower-case name) is passed to the client. */
export function isForwardedResponseHeader(name: string): boolean {
  return !RESPONSE_DROPPED.has(name);
}

/** Names a `Connection` header lists as hop-by-hop for this message. */
export function connectionListed(headers: Headers): string[] {
  const listed = headers.get("connection");
  return listed ? listed.toLowerCase().split(",").map((name) => name.trim()) : [];
}

function copyForwarded(source: Headers, forwarded: (name: string) => boolean): Headers {
  const listed = connectionListed(source);
  const out = new Headers();
  for (const [name, value] of source) {
    if (forwarded(name) && !listed.includes(name)) out.append(name, value);
  }
  return out;
}

/** The headers to send upstream for a client request. */
export function upstreamRequestHeaders(client: Headers): Headers {
  return copyForwarded(client, isForwardedRequestHeader);
}

/** The headers to send the client for an upstream response. */
export function clientResponseHeaders(upstream: Headers): Headers {
  return copyForwarded(upstream, isForwardedResponseHeader);
}
