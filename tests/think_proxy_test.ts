/** The think filter through the real server: every answer shape, streaming and not, and its flags. */
import OpenAI from "openai";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { sseData, startTestBridge } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const R1_REPLY = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?";
const chat = { model: "deepseek-r1:7b", messages: [{ role: "user", content: "hi" }] };

type Delta = { content?: string; reasoning_content?: string; role?: string };

function streamedText(text: string, field: "content" | "reasoning_content" = "content"): string {
  return sseData(text).map((event) => (event.choices as { delta: Delta }[])[0]?.delta?.[field] ?? "").join(
    "",
  );
}

Deno.test("OpenAI JSON: the block is gone from message.content", async () => {
  await using t = await startTestBridge([], { upstream: { reply: R1_REPLY } });
  const body = await (await t.post("/v1/chat/completions", chat)).json();
  assertEquals(body.choices[0].message.content, "Hello! How can I help?");
  assertEquals(body.usage.total_tokens, 12, "usage passes untouched");
  assertEquals(body.id, "chatcmpl-fake");
});

Deno.test("OpenAI SSE: split tags across chunks, clean deltas, [DONE] and finish_reason kept", async () => {
  for (const chunkSize of [1, 3, 7, 64]) {
    await using t = await startTestBridge([], { upstream: { reply: R1_REPLY, chunkSize } });
    const text = await (await t.post("/v1/chat/completions", { ...chat, stream: true })).text();
    assertEquals(streamedText(text), "Hello! How can I help?", `chunks of ${chunkSize}`);
    assert(text.endsWith("data: [DONE]\n\n"));
    const events = sseData(text);
    assertEquals((events.at(-1)!.choices as { finish_reason: string }[])[0].finish_reason, "stop");
    assertEquals((events[0].choices as { delta: Delta }[])[0].delta.role, "assistant", "role chunk kept");
    // Chunks that were all reasoning are dropped rather than sent empty.
    for (const event of events.slice(1, -1)) {
      assert((event.choices as { delta: Delta }[])[0].delta.content !== "", "no empty content chunks");
    }
  }
});

Deno.test("the first visible token is not held back while the answer streams", async () => {
  await using t = await startTestBridge([], {
    upstream: { reply: "<think>x</think>" + "word ".repeat(20), chunkSize: 5, chunkDelayMs: 50 },
  });
  const start = performance.now();
  const response = await t.post("/v1/chat/completions", { ...chat, stream: true });
  const reader = response.body!.getReader();
  let firstVisibleAt = 0;
  let buffered = "";
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    buffered += new TextDecoder().decode(chunk.value);
    if (!firstVisibleAt && streamedText(buffered).includes("word")) {
      firstVisibleAt = performance.now() - start;
    }
  }
  // The answer takes ~1.2 s to stream; its first word must arrive with the chunk that carries it.
  assert(firstVisibleAt > 0 && firstVisibleAt < 400, `first word after ${firstVisibleAt.toFixed(0)} ms`);
});

Deno.test("Ollama /api/chat NDJSON and /api/generate JSON", async () => {
  await using t = await startTestBridge([], { upstream: { reply: R1_REPLY, chunkSize: 5 } });
  const lines = (await (await t.post("/api/chat", chat)).text()).trim().split("\n").map((line) =>
    JSON.parse(line)
  );
  assertEquals(lines.map((line) => line.message.content).join(""), "Hello! How can I help?");
  assertEquals(lines.at(-1).done, true);
  assertEquals(lines.at(-1).eval_count, 7);
  assert(lines.every((line) => line.done || line.message.content !== ""), "no empty lines");
  const generated = await (await t.post("/api/generate", { ...chat, stream: false })).json();
  assertEquals(generated.response, "Hello! How can I help?");
});

Deno.test("--think-mode field moves the reasoning to reasoning_content / thinking", async () => {
  await using t = await startTestBridge(["--think-mode", "field"], {
    upstream: { reply: R1_REPLY, chunkSize: 4 },
  });
  const body = await (await t.post("/v1/chat/completions", chat)).json();
  assertEquals(body.choices[0].message.content, "Hello! How can I help?");
  assertEquals(body.choices[0].message.reasoning_content, "\nThe user greets me. I should greet back.\n");
  const text = await (await t.post("/v1/chat/completions", { ...chat, stream: true })).text();
  assertEquals(streamedText(text, "reasoning_content"), "\nThe user greets me. I should greet back.\n");
  assertEquals(streamedText(text), "Hello! How can I help?");
  const ollama = await (await t.post("/api/chat", { ...chat, stream: false })).json();
  assertEquals(ollama.message.thinking, "\nThe user greets me. I should greet back.\n");
  assertEquals(ollama.message.content, "Hello! How can I help?");
});

Deno.test("--disable-think-filter passes the reasoning through", async () => {
  await using t = await startTestBridge(["--disable-think-filter"], { upstream: { reply: R1_REPLY } });
  assertEquals(
    (await (await t.post("/v1/chat/completions", chat)).json()).choices[0].message.content,
    R1_REPLY,
  );
});

Deno.test("--think-tags and --think-implicit-open", async () => {
  await using t = await startTestBridge(["--think-tags", "reasoning", "--think-implicit-open", "r1"], {
    upstream: { reply: "Let me see.</reasoning>\n4 <think>kept: not a configured tag</think>" },
  });
  const body = await (await t.post("/v1/chat/completions", chat)).json();
  assertEquals(body.choices[0].message.content, "4 <think>kept: not a configured tag</think>");
  const other = await (await t.post("/v1/chat/completions", { ...chat, model: "llama3" })).json();
  assertEquals(other.choices[0].message.content, "Let me see.\n4 <think>kept: not a configured tag</think>");
});

Deno.test("error answers are never filtered; the metric counts removed blocks", async () => {
  await using t = await startTestBridge([], { upstream: { reply: R1_REPLY } });
  t.upstream.plan({ status: 400, body: '{"error":"<think>literal</think>"}' });
  assertEquals(
    await (await t.post("/v1/chat/completions", chat)).text(),
    '{"error":"<think>literal</think>"}',
  );
  await (await t.post("/v1/chat/completions", chat)).text();
  await (await t.post("/v1/chat/completions", { ...chat, stream: true })).text();
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_think_blocks_removed_total 2/);
});

Deno.test("openai SDK sees clean text, streamed and not", async () => {
  await using t = await startTestBridge([], { upstream: { reply: R1_REPLY, chunkSize: 3 } });
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "sk-x", maxRetries: 0 });
  const whole = await client.chat.completions.create({
    model: "deepseek-r1",
    messages: [{ role: "user", content: "hi" }],
  });
  assertEquals(whole.choices[0].message.content, "Hello! How can I help?");
  const stream = await client.chat.completions.create({ model: "deepseek-r1", messages: [], stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assertEquals(text, "Hello! How can I help?");
});

Deno.test("an upstream's odd shapes (a null choice, a string message) pass through; the rest is still filtered", async () => {
  const bodies: Record<string, [string, string]> = {
    json: ["application/json", '{"choices":[null,{"index":1,"message":{"content":"<think>x</think>hi"}}]}'],
    sse: [
      "text/event-stream",
      'data: {"choices":[7,{"index":1,"delta":{"content":"<think>x</think>hi"}}]}\n\ndata: [DONE]\n\n',
    ],
    ollama: [
      "application/json",
      '{"message":"<think>x</think>","response":"<think>y</think>ok","done":true}',
    ],
  };
  await using upstream = new ScriptedUpstream((request) => {
    const [type, body] =
      bodies[request.line.includes("/api/") ? "ollama" : JSON.parse(request.body).stream ? "sse" : "json"];
    return response(200, body, { "content-type": type });
  });
  await using t = await startTestBridge([], { upstreamUrl: upstream.url });
  const plain = await t.post("/v1/chat/completions", chat);
  assertEquals([plain.status, await plain.json()], [200, {
    choices: [null, { index: 1, message: { content: "hi" } }],
  }]);
  const streamed = await t.post("/v1/chat/completions", { ...chat, stream: true });
  assertEquals(streamed.status, 200);
  assertEquals(
    await streamed.text(),
    'data: {"choices":[7,{"index":1,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n',
  );
  // An Ollama chat answer whose message is a string: nothing the filter reads, so it goes out as it came.
  const ollama = await t.post("/api/chat", { ...chat, stream: false });
  assertEquals([ollama.status, await ollama.json()], [200, JSON.parse(bodies.ollama[1])]);
});
