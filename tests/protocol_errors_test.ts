/**
 * Issue 16, item 2: errors the bridge makes itself take the shape of the path's API: Ollama's
 * `{"error":"<message>"}` on /api/*, OpenAI's `{"error":{"message","type","code","param"}}` everywhere else.
 */
import { assert, assertEquals } from "./assert.ts";
import { rawHttp, startTestBridge, tempCacheDir } from "./harness.ts";

const OLLAMA_CHAT = { model: "m", messages: [{ role: "user", content: "hi" }] };

async function ollamaError(response: Response, status: number): Promise<string> {
  assertEquals(response.status, status);
  const body = await response.json();
  assertEquals(Object.keys(body), ["error"], JSON.stringify(body));
  assertEquals(typeof body.error, "string", JSON.stringify(body));
  return body.error;
}

async function openaiError(response: Response, status: number): Promise<string> {
  assertEquals(response.status, status);
  const body = await response.json();
  assertEquals(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  return body.error.code;
}

Deno.test("/api errors are Ollama-shaped, /v1 errors OpenAI-shaped: bad JSON, upstream down, timeout", async () => {
  {
    await using t = await startTestBridge([], { upstreamUrl: "http://127.0.0.1:9" });
    await ollamaError(await t.post("/api/chat", "{not json"), 400);
    assertEquals(await openaiError(await t.post("/v1/chat/completions", "{not json"), 400), "invalid_json");
    assert(
      (await ollamaError(await t.post("/api/chat", OLLAMA_CHAT), 502)).startsWith("Upstream is unreachable"),
    );
    assertEquals(
      await openaiError(await t.post("/v1/chat/completions", OLLAMA_CHAT), 502),
      "upstream_unreachable",
    );
    const path = await rawHttp(t.url, "GET /api/%2e%2e/x HTTP/1.1\r\nhost: x\r\n\r\n");
    assert(/\r\n\r\n\{"error":"Request path refused/.test(path), path);
  }
  {
    await using t = await startTestBridge(["--timeout", "1000"]);
    t.upstream.always({ delayMs: 5000 });
    assert((await ollamaError(await t.post("/api/chat", OLLAMA_CHAT), 504)).includes("--timeout"));
  }
});

Deno.test("/api errors are Ollama-shaped: rate limit, access key, body too large", async () => {
  await using t = await startTestBridge([
    "--rate-limit",
    "1",
    "--enable-shared-mode",
    "--api-key",
    "sk-up",
    "--access-key",
    "team:ak-1",
    "--max-body-size",
    "1KiB",
  ]);
  await ollamaError(await t.post("/api/chat", OLLAMA_CHAT), 401);
  const auth = { authorization: "Bearer ak-1" };
  await (await t.post("/api/chat", OLLAMA_CHAT, auth)).body?.cancel();
  const limited = await t.post("/api/chat", OLLAMA_CHAT, auth);
  assert(limited.headers.get("retry-after"));
  await ollamaError(limited, 429);
  await ollamaError(await t.post("/api/chat", { ...OLLAMA_CHAT, pad: "x".repeat(2048) }, auth), 413);
  assertEquals(await openaiError(await t.post("/v1/chat/completions", OLLAMA_CHAT), 401), "invalid_api_key");
});

Deno.test("/api errors are Ollama-shaped: Lua plugin failures and async job conflicts", async () => {
  await using dir = await tempCacheDir();
  const script = `${dir.path}/fail.lua`;
  await Deno.writeTextFile(
    script,
    `function HandleServerRequest(request)
  if request.headers["x-fail"] then error("boom") end
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await using t = await startTestBridge([
    "--enable-luajit",
    "--luajit-script",
    script,
    "--enable-async-request",
    "--cache-dir",
    dir.path,
  ]);
  await ollamaError(await t.post("/api/chat", OLLAMA_CHAT, { "x-fail": "1" }), 500);
  assertEquals(
    await openaiError(await t.post("/v1/chat/completions", OLLAMA_CHAT, { "x-fail": "1" }), 500),
    "plugin_error",
  );
  t.upstream.always({ delayMs: 300 });
  const job = { ...OLLAMA_CHAT, request_fingerprint: "fp-1" };
  assertEquals((await t.post("/api/chat", job)).status, 202);
  const conflict = await t.post("/api/chat", { ...job, messages: [{ role: "user", content: "other" }] });
  assert((await ollamaError(conflict, 409)).includes("request_fingerprint"));
});
