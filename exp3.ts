import { Hono } from "hono";
import { Http1Client } from "./src/transport/http1.ts";
import { clientResponseHeaders, upstreamRequestHeaders } from "./src/proxy/headers.ts";
const c = new Http1Client();
const mode = Deno.args[0];
const app = new Hono();
app.all("/v1/*", async (ctx) => {
  const req = ctx.req.raw;
  let signal = req.signal;
  let timer;
  if (mode === "timer") timer = setTimeout(() => {}, 300000);
  if (mode === "ac") {
    const d = new AbortController();
    const f = () => d.abort();
    req.signal.addEventListener("abort", f);
    signal = d.signal;
  }
  if (mode.includes("sig")) {
    const d = new AbortController();
    timer = setTimeout(() => d.abort(), 300000);
    signal = AbortSignal.any([req.signal, d.signal]);
  }
  const headers = mode.includes("hdr") ? upstreamRequestHeaders(req.headers) : new Headers();
  const r = await c.fetch("http://127.0.0.1:18100" + ctx.req.path, {
    method: req.method,
    headers,
    body: null,
    signal,
  });
  const b = await r.arrayBuffer();
  clearTimeout(timer);
  return new Response(b, {
    status: r.status,
    headers: mode.includes("hdr") ? clientResponseHeaders(r.headers) : r.headers,
  });
});
Deno.serve({ port: 18102, onListen() {} }, app.fetch);
