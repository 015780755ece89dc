/**
 * Issue 15, item 7: secrets never reach a client, a log, or a file others can read. (Query-string secrets in
 * logs: proxy_test.ts.)
 */
import { assert, assertEquals } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });
const KEY = "sk-bridge-0123456789abcdef";

Deno.test("shared mode: an upstream that echoes the bridge's key in its body or headers has it masked", async () => {
  await using upstream = new ScriptedUpstream((request) => {
    const sent = request.headers.authorization.replace("Bearer ", "");
    if (request.line.includes("stream")) {
      // A stream that splits the key across two writes.
      const half = sent.length >> 1;
      return {
        write: [
          "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
          chunk(`data: {"choices":[{"delta":{"content":"key ${sent.slice(0, half)}`),
          chunk(`${sent.slice(half)} end"}}]}\n\ndata: [DONE]\n\n`),
          "0\r\n\r\n",
        ],
      };
    }
    return response(401, JSON.stringify({ error: { message: `Incorrect API key provided: ${sent}` } }), {
      "x-echo": `key=${sent}`,
    });
  });
  await using t = await startTestBridge([
    "--enable-shared-mode",
    "--api-key",
    KEY,
    "--access-key",
    "team:ak-1234",
  ], {
    upstreamUrl: upstream.url,
  });
  const streamed = await fetch(`${t.url}/v1/stream/chat`, {
    method: "POST",
    body: CHAT,
    headers: { authorization: "Bearer ak-1234" },
  });
  const events = await streamed.text();
  assert(!events.includes(KEY) && events.includes("key *** end"), events);
  // Last: a 401 takes the key out of the pool.
  const refused = await t.post("/v1/chat/completions", CHAT, { authorization: "Bearer ak-1234" });
  assertEquals(refused.status, 401);
  const text = await refused.text();
  assert(!text.includes(KEY) && text.includes("Incorrect API key provided: ***"), text);
  assertEquals(refused.headers.get("x-echo"), "key=***");
  assert(!t.logs.join("\n").includes(KEY));
});

function chunk(text: string): string {
  return `${new TextEncoder().encode(text).length.toString(16)}\r\n${text}\r\n`;
}

Deno.test("the --ollama URL's user:password is sent as Basic auth, never logged; a client's own key wins", async () => {
  await using upstream = new ScriptedUpstream((request) =>
    response(200, JSON.stringify({ authorization: request.headers.authorization ?? null }))
  );
  const withUserinfo = upstream.url.replace("http://", "http://bridge-user:s3cret-pass@");
  await using t = await startTestBridge(["--debug"], { upstreamUrl: withUserinfo });
  const plain = await (await fetch(`${t.url}/v1/models`)).json();
  assertEquals(plain.authorization, `Basic ${btoa("bridge-user:s3cret-pass")}`);
  const own = await (await fetch(`${t.url}/v1/models`, { headers: { authorization: "Bearer client-key" } }))
    .json();
  assertEquals(own.authorization, "Bearer client-key");
  assertEquals(upstream.received.length, 2);
  const logs = t.logs.join("\n");
  assert(!logs.includes("s3cret-pass") && !logs.includes(btoa("bridge-user:s3cret-pass")), logs);
});

Deno.test("cache and job stores are created 0700 (folder) and 0600 (files)", {
  ignore: Deno.build.os === "windows",
}, async () => {
  await using parent = await tempCacheDir();
  const dir = `${parent.path}/fresh`;
  {
    await using t = await startTestBridge(["--enable-cache", "--enable-async-request", "--cache-dir", dir]);
    await (await t.post("/v1/chat/completions", CHAT)).body?.cancel();
    await t.cacheSettled();
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
    for await (const entry of Deno.readDir(dir)) {
      const mode = (await Deno.stat(`${dir}/${entry.name}`)).mode! & 0o777;
      assertEquals(mode & 0o077, 0, `${entry.name} is ${mode.toString(8)}`);
    }
  }
});
