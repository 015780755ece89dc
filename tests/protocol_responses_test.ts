/**
 * Issue 16, item 7: OpenAI's Responses API (`/v1/responses`) is cached like chat (whole bodies, and streams
 * replayed as their events) and its output text is think-filtered; `previous_response_id` is part of the key.
 */
import { assert, assertEquals } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const TEXT = "<think>The user says hi.</think>Hello there";

function wholeAnswer(): string {
  return JSON.stringify({
    id: "resp_1",
    object: "response",
    status: "completed",
    output: [{
      type: "message",
      id: "msg_1",
      role: "assistant",
      content: [{ type: "output_text", text: TEXT }],
    }],
  });
}

function streamAnswer(): string {
  const events: Record<string, unknown>[] = [{
    type: "response.created",
    response: { id: "resp_2", status: "in_progress" },
  }];
  for (const delta of ["<thi", "nk>The user", " says hi.</th", "ink>Hel", "lo there"]) {
    events.push({
      type: "response.output_text.delta",
      item_id: "msg_1",
      output_index: 0,
      content_index: 0,
      delta,
    });
  }
  events.push({
    type: "response.output_text.done",
    item_id: "msg_1",
    output_index: 0,
    content_index: 0,
    text: TEXT,
  });
  events.push({
    type: "response.completed",
    response: {
      id: "resp_2",
      status: "completed",
      output: [{ type: "message", content: [{ type: "output_text", text: TEXT }] }],
    },
  });
  const body = events.map((event) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`).join("");
  return `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${
    new TextEncoder().encode(body).length
  }\r\n\r\n${body}`;
}

async function bridge(dir: string) {
  const upstream = new ScriptedUpstream((request) =>
    JSON.parse(request.body).stream ? streamAnswer() : response(200, wholeAnswer())
  );
  const t = await startTestBridge(["--enable-cache", "--cache-dir", dir], { upstreamUrl: upstream.url });
  return { upstream, t };
}

Deno.test("Responses API, whole: output text filtered, answer cached, previous_response_id in the key", async () => {
  await using dir = await tempCacheDir();
  const { upstream, t } = await bridge(dir.path);
  await using _u = upstream;
  await using _t = t;
  const ask = (extra: Record<string, unknown> = {}) =>
    t.post("/v1/responses", { model: "m", input: "hi", ...extra });
  const first = await ask();
  assertEquals(first.headers.get("x-cache"), "MISS");
  assertEquals((await first.json()).output[0].content[0].text, "Hello there");
  await t.cacheSettled();
  const hit = await ask();
  assert(hit.headers.get("x-cache")!.startsWith("HIT"), hit.headers.get("x-cache")!);
  assertEquals((await hit.json()).output[0].content[0].text, "Hello there");
  for (const id of ["resp_a", "resp_b", "resp_a"]) {
    await (await ask({ previous_response_id: id })).body?.cancel();
    await t.cacheSettled();
  }
  assertEquals(
    upstream.count("POST /v1/responses"),
    3,
    "one call, then one per distinct previous_response_id",
  );
});

Deno.test("Responses API, streamed: deltas filtered across splits, done events filtered, replayed from cache", async () => {
  await using dir = await tempCacheDir();
  const { upstream, t } = await bridge(dir.path);
  await using _u = upstream;
  await using _t = t;
  const events = async () => {
    const answer = await t.post("/v1/responses", { model: "m", input: "hi", stream: true });
    const text = await answer.text();
    const data = text.split("\n").filter((line) => line.startsWith("data: ")).map((line) =>
      JSON.parse(line.slice(6))
    );
    return { cache: answer.headers.get("x-cache"), data };
  };
  for (const expected of ["MISS", "HIT"]) {
    const { cache, data } = await events();
    assert(cache!.startsWith(expected), `${cache} for ${expected}`);
    const deltas = data.filter((event) => event.type === "response.output_text.delta").map((event) =>
      event.delta
    );
    assertEquals(deltas.join(""), "Hello there");
    assertEquals(data.find((event) => event.type === "response.output_text.done").text, "Hello there");
    const completed = data.find((event) => event.type === "response.completed");
    assertEquals(completed.response.output[0].content[0].text, "Hello there");
    await t.cacheSettled();
  }
  assertEquals(upstream.count("POST /v1/responses"), 1);
});
