/**
 * The ways the bridge can send requests upstream. `pool` is the default: the fast pooled HTTP/1.1 client.
 * `fetch` is Deno's fetch: slower, but it honours HTTP(S)_PROXY and can speak HTTP/2.
 */
import type { UpstreamClientKind } from "../../config/index.ts";
import { BridgeError, UpstreamProtocolError, UpstreamUnreachable } from "../../core/errors.ts";
import { clientResponseHeaders, CREDENTIAL_HEADERS, upstreamRequestHeaders } from "../headers.ts";
import { decodable, decodeStream, readWhole } from "./decode.ts";
import { assertSendable } from "./request_head.ts";
import { Http1Client, isStreamType } from "./http1.ts";
import type { UpstreamFetch } from "./types.ts";

export type { UpstreamFetch, UpstreamReply, UpstreamRequestInit } from "./types.ts";

export interface Transport {
  readonly fetch: UpstreamFetch;
  close(): void;
}

export interface TransportOptions {
  /** The most a whole (non-stream) decoded body may hold. */
  maxResponseBytes: number;
  /** Extra CA certificates (PEM) for https upstreams (`--upstream-ca-file`). */
  caCerts?: string[];
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);

export function createTransport(kind: UpstreamClientKind, options: TransportOptions): Transport {
  if (kind === "pool") return new Http1Client(options);
  return fetchTransport(options);
}

/**
 * Deno's fetch. It re-sends a request written on a reused keep-alive connection that the server then dropped,
 * so only idempotent requests go over kept-alive connections; every other request gets a connection of its own
 * (measured: with no idle connections kept, a written POST is never sent twice).
 */
function fetchTransport(options: TransportOptions): Transport {
  const clientOptions = { caCerts: options.caCerts };
  const keptAlive = Deno.createHttpClient(clientOptions);
  const oneShot = Deno.createHttpClient({ ...clientOptions, poolMaxIdlePerHost: 0 });
  return {
    async fetch(url, init) {
      const headers = withCredentials(upstreamRequestHeaders(init.headers), init.credentials);
      assertSendable(init.method, headers);
      // Asked for explicitly, fetch leaves any encoding the upstream uses anyway to us: the same decoders and
      // bounds as the pooled client.
      headers.set("accept-encoding", "identity");
      let response: Response;
      try {
        response = await fetch(url, {
          method: init.method,
          headers,
          body: init.body,
          signal: init.cancellation.toSignal(),
          redirect: "manual",
          client: IDEMPOTENT.has(init.method) ? keptAlive : oneShot,
        });
      } catch (error) {
        if (init.cancellation.aborted || error instanceof BridgeError) throw error;
        throw fetchFailure(error);
      }
      const { status, statusText } = response;
      if (status === 101) {
        await response.body?.cancel();
        throw new UpstreamProtocolError("it switched protocols (101), which the bridge does not proxy");
      }
      const encodings = (response.headers.get("content-encoding") ?? "").toLowerCase().split(",")
        .map((coding) => coding.trim()).filter((coding) => coding && coding !== "identity");
      const framed = response.headers.has("content-length") || response.headers.has("transfer-encoding");
      const closeFramed = !framed && response.body !== null && !NULL_BODY.has(status);
      const out = clientResponseHeaders(response.headers);
      const reply = (body: BodyInit | null) => new Response(body, { status, statusText, headers: out });
      if (!response.body || !encodings.length) return { response: reply(response.body), closeFramed };
      if (!decodable(encodings)) {
        await response.body.cancel();
        throw new UpstreamProtocolError(
          `its content-encoding '${encodings.join(", ")}' is not one the bridge decodes`,
        );
      }
      if (isStreamType(out.get("content-type"))) {
        return { response: reply(decodeStream(response.body, encodings)), closeFramed };
      }
      const complete = await readWhole(response.body, encodings, options.maxResponseBytes);
      return { response: reply(complete), complete, closeFramed };
    },
    close: () => {
      keptAlive.close();
      oneShot.close();
    },
  };
}

const NULL_BODY = new Set([204, 205, 304]);

/** Deno's fetch says only "fetch failed": its cause tells a lost connection from a response it could not parse. */
function fetchFailure(error: unknown): BridgeError {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
  if (/connect|refused|reset|closed|dns|lookup|broken pipe|unreachable|timed? ?out|blocked/i.test(cause)) {
    // Only a connection that never opened is known to have carried nothing of the request.
    return new UpstreamUnreachable(cause, /connect|refused|dns|lookup|unreachable/i.test(cause));
  }
  return new UpstreamProtocolError(cause);
}

function withCredentials(headers: Headers, credentials: string | null | undefined): Headers {
  if (credentials === undefined) return headers;
  for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  if (credentials) headers.set("authorization", credentials);
  return headers;
}
