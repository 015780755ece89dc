/** Issue 15, item 9: bad JSON shapes get a 400, and numbers JSON.parse would merge never share a cache key. */
import { MAX_DEPTH, parseJsonBody, scanJson } from "../src/core/json_body.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";

const encoder = new TextEncoder();
const nested = (depth: number) =>
  `{"model":"m","messages":[{"role":"user","content":${"[".repeat(depth)}${"]".repeat(depth)}}]}`;

Deno.test("a body nested 100,000 levels deep is a 400, not a 500; 128 levels still pass", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  for (const depth of [100_000, MAX_DEPTH]) {
    const answer = await t.post("/v1/chat/completions", nested(depth));
    assertEquals(answer.status, 400, `depth ${depth}`);
    const body = await answer.json();
    assertEquals(body.error.code, "invalid_json");
    assertMatch(body.error.message, /deeper than 128 levels/);
  }
  // The body's own object and the messages array take 3 levels: 125 more make 128 in all.
  const fine = await t.post("/v1/chat/completions", nested(MAX_DEPTH - 3));
  assertEquals(fine.status, 200);
  await fine.body?.cancel();
  assertEquals(t.upstream.calls, 1);
});

Deno.test("invalid UTF-8 in a JSON body is a 400", async () => {
  await using t = await startTestBridge();
  const body = new Uint8Array([
    ...encoder.encode('{"model":"m","messages":[{"role":"user","content":"'),
    0xff,
    0xfe,
    ...encoder.encode('"}]}'),
  ]);
  const answer = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", body });
  assertEquals(answer.status, 400);
  assertMatch((await answer.json()).error.message, /not valid UTF-8/);
  assertEquals(t.upstream.calls, 0);
});

Deno.test("numbers JSON.parse merges (big seeds, 1e400 and null, 1e-400 and 0) get different cache keys", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  const chat = (extra: string) => `{"model":"m","messages":[{"role":"user","content":"pick"}],${extra}}`;
  const pairs = [
    ['"seed":12345678901234567891', '"seed":12345678901234567892'],
    ['"temperature":1e400', '"temperature":null'],
    ['"temperature":1e-400', '"temperature":0'],
  ];
  for (const [a, b] of pairs) {
    for (const extra of [a, b, a]) {
      await (await t.post("/v1/chat/completions", chat(extra))).body?.cancel();
      await t.cacheSettled();
    }
  }
  assertEquals(t.upstream.calls, 6, "each pair made two calls; each repeat was a hit");
  // Plain numbers keep the fast path: 0.5 and 0.50 are the same value, and one answer.
  for (const extra of ['"temperature":0.5', '"temperature":0.50']) {
    await (await t.post("/v1/chat/completions", chat(extra))).body?.cancel();
    await t.cacheSettled();
  }
  assertEquals(t.upstream.calls, 7);
});

Deno.test("scanJson: depth and inexact numbers, outside strings only", () => {
  const scan = (text: string) => scanJson(encoder.encode(text));
  assertEquals(scan('{"a":[1,2,{"b":"[[[["}]}'), { tooDeep: false, inexactNumbers: false });
  assertEquals(scan(`${"[".repeat(129)}${"]".repeat(129)}`).tooDeep, true);
  assertEquals(scan('{"s":"12345678901234567891"}').inexactNumbers, false, "inside a string");
  assertEquals(scan('{"n":123456789012345}').inexactNumbers, false, "15 digits are exact");
  assertEquals(scan('{"n":1234567890123456789}').inexactNumbers, true);
  assertEquals(scan('{"n":1.5e3,"m":-2E-5}').inexactNumbers, false);
  assertEquals(scan('{"n":-1e400}').inexactNumbers, true);
  assertEquals(scan('{"n":0.0000e-999}').inexactNumbers, false, "zero is zero");
  assertEquals(scan('{"q":"\\"","n":1e999}').inexactNumbers, true, "escaped quote does not end the string");
  assert(parseJsonBody(encoder.encode('{"n":1e400}')).inexactNumbers);
});
