/**
 * Issue 15, item 3: no path steers the bridge off /v1 and /api or outside the base URL's path. Sent over raw
 * TCP, since fetch would normalize the paths before they left.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { rawHttp, startTestBridge } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";

const REFUSED = [
  "/v1/../internal/admin/keys",
  "/v1/./models",
  "/api/%2e%2e/internal",
  "/api/%2E%2e/internal",
  "/v1/.%2e/x",
  "/v1/models/..",
  "/v1/a%2fb",
  "/v1/a%2F..%2Fb",
  "/v1\\..\\internal",
  "/v1/%5c../x",
  "/v1/models%0aX-Injected:%201",
  "/v1/models%00",
  "/v1/models%zz",
];

Deno.test("dot segments, encoded slashes, backslashes and control characters are refused with 400", async () => {
  await using upstream = new ScriptedUpstream((request) =>
    response(200, JSON.stringify({ line: request.line }))
  );
  // A base URL with a path, as for OpenAI-compatible APIs: nothing may leave it. Shared mode: the bridge's key.
  await using t = await startTestBridge(["--enable-shared-mode", "--api-key", "sk-bridge-secret"], {
    upstreamUrl: `${upstream.url}/base/v1`,
  });
  for (const path of REFUSED) {
    const answer = await rawHttp(t.url, `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
    assertMatch(answer, /^HTTP\/1\.1 400 /, path);
    assertMatch(
      answer,
      path.startsWith("/api") ? /\{"error":"Request path refused/ : /"code":"invalid_path"/,
      path,
    );
  }
  assertEquals(upstream.received.length, 0, "none of them reached the upstream");
  // Paths the bridge does not proxy never carry the key either: a 404 from the bridge itself.
  for (const path of ["/internal/admin/keys", "//evil.example/v1/models", "/v2/models", "/v1x"]) {
    assertMatch(await rawHttp(t.url, `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`), /^HTTP\/1\.1 404 /, path);
  }
  assertEquals(upstream.received.length, 0);
  // A good path stays under the base URL's path, with encoded unreserved characters normalized.
  const good = await rawHttp(t.url, "GET /v1/m%6Fdels/caf%C3%A9?x=../y HTTP/1.1\r\nhost: x\r\n\r\n");
  assertMatch(good, /^HTTP\/1\.1 200 /);
  assertEquals(upstream.received.map((request) => request.line), [
    "GET /base/v1/models/caf%C3%A9?x=../y HTTP/1.1",
  ]);
  assertEquals(upstream.received[0].headers.authorization, "Bearer sk-bridge-secret");
});

Deno.test("a refused path on /api gets the error in a JSON body, and the bridge keeps serving", async () => {
  await using t = await startTestBridge();
  const answer = await rawHttp(
    t.url,
    "POST /api/%2e%2e/chat HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
  );
  assertMatch(answer, /^HTTP\/1\.1 400 /);
  assert(answer.includes("dot segment"));
  assertEquals(t.upstream.calls, 0);
  assertEquals((await fetch(`${t.url}/v1/models`)).status, 200);
});
