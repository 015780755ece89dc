import { mapNdjson } from "../src/stream/ndjson.ts";
import { mapSse } from "../src/stream/sse.ts";
import { assertEquals } from "./assert.ts";

const encoder = new TextEncoder();

async function run(
  transform: TransformStream<Uint8Array, Uint8Array>,
  pieces: Uint8Array[],
): Promise<string> {
  return await new Response(ReadableStream.from(pieces).pipeThrough(transform)).text();
}

/** The input whole, byte by byte, and split in two at every byte offset (inside UTF-8 sequences too). */
function splits(text: string): Uint8Array[][] {
  const bytes = encoder.encode(text);
  const out = [[bytes], Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))];
  for (let cut = 1; cut < bytes.length; cut++) out.push([bytes.subarray(0, cut), bytes.subarray(cut)]);
  return out;
}

Deno.test("SSE mapper: CR, LF and CRLF line ends, multi-line data, comments, any split", async () => {
  const input =
    'data: one\r\n\r\n: keep-alive\n\nevent: ping\rdata: a\rdata: b\r\rid: 7\ndata: {"é":"🎉"}\n\n';
  const expected =
    'data: ONE\n\n: keep-alive\n\nevent: ping\ndata: A\ndata: B\n\nid: 7\ndata: {"É":"🎉"}\n\n';
  const upper = () => mapSse({ event: (event) => [{ ...event, data: event.data.toUpperCase() }] });
  for (const [n, pieces] of splits(input).entries()) {
    assertEquals(await run(upper(), pieces), expected, `split ${n}`);
  }
});

Deno.test("SSE mapper: events can be dropped, multiplied, and added at the end", async () => {
  const transform = mapSse({
    event: (event) => event.data === "drop" ? [] : [event, event],
    end: () => [{ data: "bye" }],
  });
  assertEquals(
    await run(transform, [encoder.encode("data: drop\n\ndata: x\n\n")]),
    "data: x\n\ndata: x\n\ndata: bye\n\n",
  );
});

Deno.test("NDJSON mapper: lines split anywhere, CRLF, a last line without newline, blank lines", async () => {
  const input = '{"a":1}\r\n\n{"b":"日本"}\n{"c":3}';
  const expected = '{"a":1}!\n{"b":"日本"}!\n{"c":3}!\nend\n';
  const mark = () => mapNdjson({ line: (text) => [text + "!"], end: () => ["end"] });
  for (const [n, pieces] of splits(input).entries()) {
    assertEquals(await run(mark(), pieces), expected, `split ${n}`);
  }
});
