/** The official OpenAI SDK, pointed at the bridge with the base URL the README gives. */
import OpenAI from "openai";
import { assertEquals } from "./assert.ts";
import { startTestBridge } from "./harness.ts";

Deno.test("openai SDK: non-stream chat completion through the bridge", async () => {
  await using t = await startTestBridge();
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
  const completion = await client.chat.completions.create({
    model: "deepseek-r1",
    messages: [{ role: "user", content: "hello" }],
  });
  assertEquals(completion.choices[0].message.content, "Hello from the fake upstream.");
  assertEquals(t.upstream.received[0].headers.get("authorization"), "Bearer sk-client");
});

Deno.test("openai SDK: streamed chat completion through the bridge", async () => {
  await using t = await startTestBridge([], { upstream: { chunkDelayMs: 5 } });
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "deepseek-r1",
    messages: [{ role: "user", content: "hello" }],
    stream: true,
  });
  let text = "";
  let chunks = 0;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    chunks++;
  }
  assertEquals(text, "Hello from the fake upstream.");
  assertEquals(chunks, 5);
});

Deno.test("openai SDK: a stream cut mid-way raises an error instead of ending quietly", async () => {
  await using t = await startTestBridge();
  t.upstream.plan({ cutAfterChunks: 2 });
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: "m", messages: [], stream: true });
  let failure: unknown;
  try {
    for await (const _ of stream) { /* read to the end */ }
  } catch (error) {
    failure = error;
  }
  assertEquals(failure instanceof OpenAI.APIError, true);
  assertEquals(String((failure as Error).message).includes("Upstream is unreachable"), true);
});

Deno.test("openai SDK: models list and a proxy-made error", async () => {
  await using t = await startTestBridge([], { upstreamUrl: "http://127.0.0.1:9" });
  const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
  let status = 0;
  try {
    await client.models.list();
  } catch (error) {
    status = (error as InstanceType<typeof OpenAI.APIError>).status ?? 0;
  }
  assertEquals(status, 502);
});
