/**
 * Issue 16, item 3: in JSON mode (`response_format` json_object / json_schema, Ollama `format`), only a think
 * block that opens the answer is removed; text inside the JSON is content, byte for byte. Tool-call arguments
 * are never filtered.
 */
import { filterThink, ThinkFilter } from "../src/filter/think.ts";
import { jsonMode } from "../src/filter/think_answer.ts";
import { assertEquals } from "./assert.ts";
import { sseData, startTestBridge } from "./harness.ts";

const JSON_ANSWER = '{"note":"keep <think>this</think> and </think> as they are","n":1}';

Deno.test("think filter, opening-only: a leading block goes, the JSON stays byte for byte at every split", () => {
  const cases: [string, string][] = [
    [JSON_ANSWER, JSON_ANSWER],
    [`<think>plan the JSON</think>\n${JSON_ANSWER}`, JSON_ANSWER],
    [`  \n${JSON_ANSWER}`, `  \n${JSON_ANSWER}`],
    [`</think>${JSON_ANSWER}`, JSON_ANSWER],
    ['<not a tag>{"a":1}', '<not a tag>{"a":1}'],
  ];
  for (const [input, expected] of cases) {
    assertEquals(filterThink(input, { openingOnly: true }).content, expected, input);
    for (let split = 0; split <= input.length; split++) {
      const filter = new ThinkFilter({ openingOnly: true });
      const out = [filter.push(input.slice(0, split)), filter.push(input.slice(split)), filter.end()];
      assertEquals(out.map((part) => part.content).join(""), expected, `${input} split at ${split}`);
    }
  }
  // Without JSON mode the tags inside are filtered (the behaviour JSON mode must not have).
  assertEquals(filterThink(JSON_ANSWER).content === JSON_ANSWER, false);
});

Deno.test("JSON mode is read from response_format and Ollama's format", () => {
  assertEquals(jsonMode({ response_format: { type: "json_object" } }), true);
  assertEquals(
    jsonMode({ response_format: { type: "json_schema", json_schema: { name: "x", schema: {} } } }),
    true,
  );
  assertEquals(jsonMode({ response_format: { type: "text" } }), false);
  assertEquals(jsonMode({ format: "json" }), true);
  assertEquals(jsonMode({ format: { type: "object", properties: {} } }), true);
  assertEquals(jsonMode({ model: "m" }), false);
});

const chat = { model: "m", messages: [{ role: "user", content: "give JSON" }] };

Deno.test("OpenAI json_object and json_schema, whole and streamed: the JSON arrives intact", async () => {
  await using t = await startTestBridge([], {
    upstream: { reply: `<think>hmm</think>${JSON_ANSWER}`, chunkSize: 5 },
  });
  for (
    const response_format of [{ type: "json_object" }, {
      type: "json_schema",
      json_schema: { name: "n", schema: {} },
    }]
  ) {
    const whole = await (await t.post("/v1/chat/completions", { ...chat, response_format })).json();
    assertEquals(whole.choices[0].message.content, JSON_ANSWER);
    const text = await (await t.post("/v1/chat/completions", { ...chat, response_format, stream: true }))
      .text();
    const streamed = sseData(text).map((event) =>
      ((event.choices as { delta: { content?: string } }[])[0]?.delta?.content) ?? ""
    ).join("");
    assertEquals(streamed, JSON_ANSWER);
  }
});

Deno.test("Ollama format json and a schema: the JSON arrives intact", async () => {
  await using t = await startTestBridge([], { upstream: { reply: JSON_ANSWER, chunkSize: 4 } });
  for (const format of ["json", { type: "object" }]) {
    const whole = await (await t.post("/api/chat", { ...chat, format, stream: false })).json();
    assertEquals(whole.message.content, JSON_ANSWER);
    const lines = (await (await t.post("/api/generate", { model: "m", prompt: "p", format })).text()).trim()
      .split("\n");
    assertEquals(lines.map((line) => JSON.parse(line).response ?? "").join(""), JSON_ANSWER);
  }
});

Deno.test("tool-call arguments holding think tags are never filtered", async () => {
  const args = '{"query":"<think>not reasoning</think>"}';
  const answer = JSON.stringify({
    id: "c",
    object: "chat.completion",
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "t", type: "function", function: { name: "search", arguments: args } }],
      },
      finish_reason: "tool_calls",
    }],
  });
  await using t = await startTestBridge();
  t.upstream.plan({ status: 200, body: answer, headers: { "content-type": "application/json" } });
  const body = await (await t.post("/v1/chat/completions", chat)).json();
  assertEquals(body.choices[0].message.tool_calls[0].function.arguments, args);
});
