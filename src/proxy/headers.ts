/**
 * Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and never
 * cross; neither do the headers that describe a body the proxy re-frames.
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

/** Not forwarded upstream: the fetch client sets host and length, and negotiates its own compression. */
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "content-length", "accept-encoding", "expect"]);

/**
 * Not passed back to the client: Deno's fetch has already decoded the body, yet keeps `content-encoding`
 * and the encoded `content-length`, which would make the client decode twice or wait for missing bytes.
 */
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, "content-encoding", "content-length"]);

function copyExcept(source: Headers, dropped: Set<string>): Headers {
  const listed = source.get("connection");
  const alsoDropped = listed ? listed.toLowerCase().split(",").map((name) => name.trim()) : [];
  const out = new Headers();
  for (const [name, value] of source) {
    if (!dropped.has(name) && !alsoDropped.includes(name)) out.append(name, value);
  }
  return out;
}

/** The headers to send upstream for a client request. */
export function upstreamRequestHeaders(client: Headers): Headers {
  return copyExcept(client, REQUEST_DROPPED);
}

/** The headers to send the client for an upstream response. */
export function clientResponseHeaders(upstream: Headers): Headers {
  return copyExcept(upstream, RESPONSE_DROPPED);
}
