/** The floor for cache hits: a bare Deno.serve answering every request with the same bytes. */
const [port, body] = Deno.args;
const bytes = new TextEncoder().encode(body);
Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen() {} }, async (request) => {
  await request.arrayBuffer();
  return new Response(bytes, { headers: { "content-type": "application/json" } });
});
