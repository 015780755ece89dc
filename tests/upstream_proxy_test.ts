/** HTTP(S)_PROXY: with a proxy variable set, `--upstream-client auto` sends requests through the proxy. */
import { assertEquals } from "./assert.ts";
import { spawnBridge } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

Deno.test("with HTTP_PROXY set, upstream requests go through the proxy (auto picks fetch)", async () => {
  await using proxy = new ScriptedUpstream((request) =>
    response(200, JSON.stringify({ line: request.line }))
  );
  const bridge = await spawnBridge({ env: { HTTP_PROXY: proxy.url } }, "http://upstream.invalid:8080");
  try {
    const answer = await fetch(`${bridge.url}/v1/models`);
    assertEquals(await answer.json(), { line: "GET http://upstream.invalid:8080/v1/models HTTP/1.1" });
    const post = await fetch(`${bridge.url}/v1/chat/completions`, { method: "POST", body: '{"model":"m"}' });
    assertEquals((await post.json()).line, "POST http://upstream.invalid:8080/v1/chat/completions HTTP/1.1");
    assertEquals(proxy.received.length, 2);
  } finally {
    bridge.process.kill("SIGTERM");
    await bridge.process.status;
  }
});
