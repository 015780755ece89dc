/**
 * Issue 16: the client matrix. The official `openai` SDK (Node), `ollama` (ollama-js) and the AI SDK (`ai` with
 * `@ai-sdk/openai-compatible`) each run the same calls against the fake upstream directly and through the
 * bridge (cache on): chat, stream, tools, JSON mode, embeddings, errors (401, 429, 500), abort mid-stream and a
 * cache hit must give the same result either way. Versions: see deno.json (docs/clients.md lists them).
 */
import OpenAI from "openai";
import { Ollama } from "ollama";
import { embed, generateObject, generateText, jsonSchema, streamText, tool } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { assert, assertEquals, waitFor } from "./assert.ts";
import { startTestBridge, tempCacheDir, type TestBridge } from "./harness.ts";

const JSON_REPLY = '{"city":"Paris","note":"<think>stays</think>"}';
const TOOL_ANSWER = JSON.stringify({
  id: "chatcmpl-tool",
  object: "chat.completion",
  created: 1,
  model: "m",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: null,
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "weather", arguments: '{"city":"Paris"}' },
      }],
    },
    finish_reason: "tool_calls",
  }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

const OLLAMA_TOOL_ANSWER = JSON.stringify({
  model: "m",
  created_at: "2026-01-01T00:00:00Z",
  message: {
    role: "assistant",
    content: "",
    tool_calls: [{ function: { name: "weather", arguments: { city: "Paris" } } }],
  },
  done: true,
});

/** Runs `call` against the upstream directly and through the bridge; returns both results. */
async function both<T>(t: TestBridge, call: (base: string) => Promise<T>): Promise<[T, T]> {
  return [await call(t.upstream.url), await call(t.url)];
}

async function bridge(): Promise<TestBridge & { dir: AsyncDisposable }> {
  const dir = await tempCacheDir();
  const t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path], {
    upstream: { chunkDelayMs: 2 },
  });
  return Object.assign(t, { dir });
}

/** What an SDK error says: its HTTP status. */
async function statusOf(call: () => Promise<unknown>): Promise<number | string> {
  try {
    await call();
    return "no error";
  } catch (error) {
    const e = error as { status?: number; status_code?: number; statusCode?: number; name?: string };
    return e.status ?? e.status_code ?? e.statusCode ?? e.name ?? "unknown";
  }
}

Deno.test("client matrix: openai (Node) gives the same results through the bridge", async () => {
  await using t = await bridge();
  await using _ = t.dir;
  const client = (base: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-client", maxRetries: 0 });
  const messages = [{ role: "user" as const, content: "hello" }];
  const [chatA, chatB] = await both(
    t,
    async (base) =>
      (await client(base).chat.completions.create({ model: "m", messages })).choices[0].message.content,
  );
  assertEquals(chatB, chatA);
  const [streamA, streamB] = await both(t, async (base) => {
    let text = "";
    for await (
      const chunk of await client(base).chat.completions.create({ model: "m", messages, stream: true })
    ) {
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    return text;
  });
  assertEquals(streamB, streamA);
  const [toolA, toolB] = await both(t, async (base) => {
    t.upstream.plan({ body: TOOL_ANSWER, status: 200, headers: { "content-type": "application/json" } });
    const answer = await client(base).chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "weather?" }],
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
    });
    return answer.choices[0].message.tool_calls;
  });
  assertEquals(toolB, toolA);
  t.upstream.reply = JSON_REPLY;
  const [jsonA, jsonB] = await both(t, async (base) =>
    (await client(base).chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "json" }],
      response_format: { type: "json_object" },
    })).choices[0].message.content);
  assertEquals([jsonB, jsonA], [JSON_REPLY, JSON_REPLY]);
  t.upstream.reply = "Hello from the fake upstream.";
  const [embA, embB] = await both(
    t,
    async (base) => (await client(base).embeddings.create({ model: "e", input: "x" })).data[0].embedding,
  );
  assertEquals(embB, embA);
  for (const status of [401, 429, 500]) {
    const [errA, errB] = await both(t, (base) => {
      t.upstream.plan({ status });
      return statusOf(() =>
        client(base).chat.completions.create({
          model: "m",
          messages: [{ role: "user", content: `e${status}` }],
        })
      );
    });
    assertEquals([errA, errB], [status, status]);
  }
  // Abort mid-stream: the SDK raises, and the upstream's stream is cancelled.
  t.upstream.always({ chunkDelayMs: 100 });
  const controller = new AbortController();
  const stream = await client(t.url).chat.completions.create({
    model: "m",
    messages: [{ role: "user", content: "abort" }],
    stream: true,
  }, { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const _chunk of stream) {
      chunks++;
      controller.abort(); // the SDK ends the iteration (or raises, by version): either way, no more chunks
    }
  } catch {
    // an abort error
  }
  assertEquals(chunks, 1);
  await waitFor(() => t.upstream.streamEnds.includes("cancelled"), {
    message: "the upstream stream was cancelled",
  });
  // A cache hit: same content, and the bridge says so.
  t.upstream.always({});
  const { data, response } = await client(t.url).chat.completions.create({ model: "m", messages })
    .withResponse();
  assertEquals(data.choices[0].message.content, chatA);
  assert(response.headers.get("x-cache")!.startsWith("HIT"), response.headers.get("x-cache")!);
});

Deno.test("client matrix: ollama-js gives the same results through the bridge", async () => {
  await using t = await bridge();
  await using _ = t.dir;
  const client = (base: string) => new Ollama({ host: base });
  const messages = [{ role: "user", content: "hello" }];
  const [chatA, chatB] = await both(
    t,
    async (base) => (await client(base).chat({ model: "m", messages })).message.content,
  );
  assertEquals(chatB, chatA);
  const [streamA, streamB] = await both(t, async (base) => {
    let text = "";
    for await (const part of await client(base).chat({ model: "m", messages, stream: true })) {
      text += part.message.content;
    }
    return text;
  });
  assertEquals(streamB, streamA);
  t.upstream.reply = JSON_REPLY;
  const [jsonA, jsonB] = await both(
    t,
    async (base) => (await client(base).generate({ model: "m", prompt: "json", format: "json" })).response,
  );
  assertEquals([jsonB, jsonA], [JSON_REPLY, JSON_REPLY]);
  t.upstream.reply = "Hello from the fake upstream.";
  const [embA, embB] = await both(
    t,
    async (base) => (await client(base).embed({ model: "e", input: "x" })).embeddings,
  );
  assertEquals(embB, embA);
  const [toolA, toolB] = await both(t, async (base) => {
    t.upstream.plan({
      body: OLLAMA_TOOL_ANSWER,
      status: 200,
      headers: { "content-type": "application/json" },
    });
    const answer = await client(base).chat({
      model: "m",
      messages: [{ role: "user", content: "weather?" }],
      tools: [{
        type: "function",
        function: { name: "weather", description: "w", parameters: { type: "object", properties: {} } },
      }],
    });
    return answer.message.tool_calls;
  });
  assertEquals(toolB, toolA);
  assertEquals(toolA?.[0].function.name, "weather");
  for (const status of [401, 429, 500]) {
    const [errA, errB] = await both(t, (base) => {
      t.upstream.plan({ status, body: JSON.stringify({ error: `planned ${status}` }) });
      return statusOf(() =>
        client(base).chat({ model: "m", messages: [{ role: "user", content: `e${status}` }] })
      );
    });
    assertEquals([errA, errB], [status, status]);
  }
  // A bridge-made error reads as a message, not "[object Object]".
  const bad = await statusOf(() => new Ollama({ host: "http://127.0.0.1:9" }).list());
  assert(bad !== "no error");
  t.upstream.always({ chunkDelayMs: 100 });
  const aborting = client(t.url);
  const stream = await aborting.chat({
    model: "m",
    messages: [{ role: "user", content: "abort" }],
    stream: true,
  });
  let aborted = false;
  try {
    for await (const _part of stream) aborting.abort();
  } catch {
    aborted = true;
  }
  assert(aborted);
  await waitFor(() => t.upstream.streamEnds.includes("cancelled"), {
    message: "the upstream stream was cancelled",
  });
  t.upstream.always({});
  const hit = await fetch(`${t.url}/api/chat`, {
    method: "POST",
    body: JSON.stringify({ model: "m", messages, stream: false }),
  });
  assertEquals((await hit.json()).message.content, chatA);
  assert(hit.headers.get("x-cache")!.startsWith("HIT"), hit.headers.get("x-cache")!);
});

Deno.test("client matrix: the AI SDK (openai-compatible provider) gives the same results through the bridge", async () => {
  await using t = await bridge();
  await using _ = t.dir;
  const model = (base: string) =>
    createOpenAICompatible({ name: "bridge", baseURL: `${base}/v1`, apiKey: "k" })("m");
  const [textA, textB] = await both(
    t,
    async (base) => (await generateText({ model: model(base), prompt: "hello", maxRetries: 0 })).text,
  );
  assertEquals(textB, textA);
  const [streamA, streamB] = await both(t, async (base) => {
    let text = "";
    for await (const part of streamText({ model: model(base), prompt: "hello", maxRetries: 0 }).textStream) {
      text += part;
    }
    return text;
  });
  assertEquals(streamB, streamA);
  t.upstream.reply = JSON_REPLY;
  const schema = jsonSchema<{ city: string; note: string }>({
    type: "object",
    properties: { city: { type: "string" }, note: { type: "string" } },
    required: ["city", "note"],
  });
  const [objA, objB] = await both(
    t,
    async (base) =>
      (await generateObject({ model: model(base), schema, prompt: "json", maxRetries: 0 })).object,
  );
  assertEquals([objB, objA], [JSON.parse(JSON_REPLY), JSON.parse(JSON_REPLY)]);
  t.upstream.reply = "Hello from the fake upstream.";
  const embedder = (base: string) =>
    createOpenAICompatible({ name: "bridge", baseURL: `${base}/v1`, apiKey: "k" }).textEmbeddingModel("e");
  const [embA, embB] = await both(
    t,
    async (base) => (await embed({ model: embedder(base), value: "x", maxRetries: 0 })).embedding,
  );
  assertEquals(embB, embA);
  const [toolA, toolB] = await both(t, async (base) => {
    t.upstream.plan({ body: TOOL_ANSWER, status: 200, headers: { "content-type": "application/json" } });
    const result = await generateText({
      model: model(base),
      prompt: "weather?",
      maxRetries: 0,
      tools: {
        weather: tool({
          description: "w",
          inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } } }),
        }),
      },
    });
    return result.toolCalls.map((call) => ({ name: call.toolName, input: call.input }));
  });
  assertEquals(toolB, toolA);
  assertEquals(toolA, [{ name: "weather", input: { city: "Paris" } }]);
  for (const status of [401, 429, 500]) {
    const [errA, errB] = await both(t, (base) => {
      t.upstream.plan({ status });
      return statusOf(() => generateText({ model: model(base), prompt: `e${status}`, maxRetries: 0 }));
    });
    assertEquals([errA, errB], [status, status]);
  }
  t.upstream.always({ chunkDelayMs: 100 });
  const controller = new AbortController();
  let aborted = false;
  try {
    const result = streamText({
      model: model(t.url),
      prompt: "abort",
      abortSignal: controller.signal,
      maxRetries: 0,
    });
    for await (const _part of result.textStream) controller.abort();
    await result.text;
  } catch {
    aborted = true;
  }
  assert(aborted || controller.signal.aborted);
  await waitFor(() => t.upstream.streamEnds.includes("cancelled"), {
    message: "the upstream stream was cancelled",
  });
  t.upstream.always({});
  const hitText = (await generateText({ model: model(t.url), prompt: "hello", maxRetries: 0 })).text;
  assertEquals(hitText, textA);
});
