/**
 * The ways the bridge can send requests upstream. `pool` is the default: the fast pooled HTTP/1.1 client.
 * `fetch` is Deno's fetch: slower, but it honours HTTP(S)_PROXY and can speak HTTP/2.
 */
import { clientResponseHeaders, CREDENTIAL_HEADERS, upstreamRequestHeaders } from "../headers.ts";
import type { UpstreamClientKind } from "../../config/index.ts";
import { Http1Client, type UpstreamFetch } from "./http1.ts";

export type { UpstreamFetch, UpstreamReply, UpstreamRequestInit } from "./http1.ts";

export interface Transport {
  readonly fetch: UpstreamFetch;
  close(): void;
}

export function createTransport(kind: UpstreamClientKind): Transport {
  if (kind === "pool") return new Http1Client();
  return {
    async fetch(url, init) {
      const response = await fetch(url, {
        method: init.method,
        headers: withCredentials(upstreamRequestHeaders(init.headers), init.credentials),
        body: init.body,
        signal: init.cancellation.toSignal(),
        redirect: "manual",
      });
      const { status, statusText } = response;
      return {
        response: new Response(response.body, {
          status,
          statusText,
          headers: clientResponseHeaders(response.headers),
        }),
      };
    },
    close: () => {},
  };
}

function withCredentials(headers: Headers, credentials: string | null | undefined): Headers {
  if (credentials === undefined) return headers;
  for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  if (credentials) headers.set("authorization", credentials);
  return headers;
}
