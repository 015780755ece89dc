/**
 * Issue 16, item 4: close-framed and malformed answers. A body that ends when the connection closes is relayed
 * but never cached; a stream framed that way and cut ends with an error event; malformed SSE is a 502 with a
 * clear message, not an empty 200.
 */
import { assertEquals, assertMatch } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";
import { ScriptedUpstream } from "./scripted_upstream.ts";

const CHAT = { model: "m", messages: [{ role: "user", content: "hi" }] };
const EVENT = 'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n';

function closeFramed(type: string, body: string): ScriptedUpstream {
  return new ScriptedUpstream(() => ({
    write: [`HTTP/1.1 200 OK\r\ncontent-type: ${type}\r\n\r\n${body}`],
    close: true,
  }));
}

for (const transport of ["pool", "fetch"]) {
  Deno.test(`a close-framed SSE stream cut before [DONE] ends with an error event (${transport})`, async () => {
    await using upstream = closeFramed("text/event-stream", EVENT + EVENT);
    await using t = await startTestBridge(["--upstream-client", transport], { upstreamUrl: upstream.url });
    const text = await (await t.post("/v1/chat/completions", { ...CHAT, stream: true })).text();
    assertMatch(text, /^data: .*Hel.*\n\ndata: .*Hel.*\n\nevent: error\ndata: .*final event/s);
  });

  Deno.test(`a close-framed stream that did end is complete; NDJSON cut is an error line (${transport})`, async () => {
    {
      await using upstream = closeFramed("text/event-stream", `${EVENT}data: [DONE]\n\n`);
      await using t = await startTestBridge(["--upstream-client", transport], { upstreamUrl: upstream.url });
      const text = await (await t.post("/v1/chat/completions", { ...CHAT, stream: true })).text();
      assertEquals(text.endsWith("data: [DONE]\n\n") && !text.includes("event: error"), true, text);
    }
    {
      const line = JSON.stringify({
        model: "m",
        message: { role: "assistant", content: "Hel" },
        done: false,
      });
      await using upstream = closeFramed("application/x-ndjson", `${line}\n`);
      await using t = await startTestBridge(["--upstream-client", transport], { upstreamUrl: upstream.url });
      const lines = (await (await t.post("/api/chat", CHAT)).text()).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assertEquals(lines.at(-1).done, true);
      assertMatch(lines.at(-1).error, /final event/);
    }
  });
}

Deno.test("a close-framed JSON answer cut so that it still parses is relayed, counted, and never cached", async () => {
  await using dir = await tempCacheDir();
  await using upstream = closeFramed("application/json", "12"); // a cut "123" still parses
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
    upstreamUrl: upstream.url,
  });
  for (let i = 0; i < 2; i++) {
    const answer = await t.post("/v1/chat/completions", CHAT);
    assertEquals([await answer.text(), answer.headers.get("x-cache")], ["12", "MISS"]);
    await t.cacheSettled();
  }
  assertEquals(upstream.count("POST"), 2);
  assertMatch(await (await fetch(`${t.url}/metrics`)).text(), /bridge_close_framed_answers_total 2/);
});

Deno.test("malformed SSE (a JSON error or an HTML page as text/event-stream) is a 502 with a clear message", async () => {
  for (const body of ['{"error":"model not loaded"}', "<html><body>Bad gateway</body></html>"]) {
    await using upstream = new ScriptedUpstream(() =>
      `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${body.length}\r\n\r\n${body}`
    );
    await using t = await startTestBridge([], { upstreamUrl: upstream.url });
    const answer = await t.post("/v1/chat/completions", { ...CHAT, stream: true });
    assertEquals(answer.status, 502);
    assertMatch((await answer.json()).error.message, /event stream is malformed: it starts with/);
  }
});
