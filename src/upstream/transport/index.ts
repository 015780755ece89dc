/**
 * The ways the bridge can send requests upstream. `pool` is the default: the fast pooled HTTP/1.1 client.
 * `fetch` is Deno's fetch: slower, but it honours HTTP(S)_PROXY and can speak HTTP/2.
 */
import type { UpstreamClientKind } from "../../config/index.ts";
import { BridgeError, UpstreamProtocolError } from "../../core/errors.ts";
import { clientResponseHeaders, CREDENTIAL_HEADERS, upstreamRequestHeaders } from "../headers.ts";
import { readWhole } from "./decode.ts";
import { Http1Client } from "./http1.ts";
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
        // Deno's fetch refuses what it cannot represent (a 101, a malformed response) with a TypeError.
        if (error instanceof TypeError && !/connect|refused|reset|closed|dns|lookup/i.test(error.message)) {
          throw new UpstreamProtocolError(error.message);
        }
        throw error;
      }
      const { status, statusText } = response;
      if (status === 101) {
        await response.body?.cancel();
        throw new UpstreamProtocolError("it switched protocols (101), which the bridge does not proxy");
      }
      const encoded = response.headers.has("content-encoding");
      const out = clientResponseHeaders(response.headers);
      const stream = /^(text\/event-stream|application\/(x-ndjson|jsonl|json-seq))\b/i.test(
        out.get("content-type") ?? "",
      );
      // fetch decoded the body itself; a compressed whole body is still held to --max-response-size.
      if (encoded && !stream && response.body) {
        const complete = await readWhole(response.body, [], options.maxResponseBytes);
        return { response: new Response(complete, { status, statusText, headers: out }), complete };
      }
      return { response: new Response(response.body, { status, statusText, headers: out }) };
    },
    close: () => {
      keptAlive.close();
      oneShot.close();
    },
  };
}

function withCredentials(headers: Headers, credentials: string | null | undefined): Headers {
  if (credentials === undefined) return headers;
  for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  if (credentials) headers.set("authorization", credentials);
  return headers;
}
