/** Lua plugins through the real server: the original API, modules, safety, and start-up failures. */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { startTestBridge, tempCacheDir, type TestBridge } from "./harness.ts";

const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };

async function script(dir: string, name: string, source: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, source);
  return path;
}

/** A bridge running `source` as its plugin (in a temporary folder, removed with the bridge). */
async function luaBridge(
  name: string,
  source: string,
  ...flags: string[]
): Promise<TestBridge> {
  const dir = await tempCacheDir();
  const path = await script(dir.path, name, source);
  const t = await startTestBridge(["--enable-luajit", "--luajit-script", path, ...flags]);
  const stopBridge = t[Symbol.asyncDispose].bind(t);
  return Object.assign(t, {
    async [Symbol.asyncDispose]() {
      await stopBridge();
      await dir[Symbol.asyncDispose]();
    },
  });
}

/** The bridge still answers a plain request: the plugin's failure was that request's alone. */
async function stillServing(t: TestBridge): Promise<void> {
  const next = await t.post("/v1/chat/completions", chat);
  assertEquals(next.status, 200);
  await next.body?.cancel();
}

const IDENTITY = `
function HandleServerRequest(request) return true, request end
function HandleServerResponse(response) return response end
`;

Deno.test("the example plugin.lua: blocks /blocked, adds its headers, appends to text/plain bodies", async () => {
  await using t = await startTestBridge(["--enable-luajit", "--luajit-script", "./plugin.lua"]);
  const blocked = await fetch(`${t.url}/blocked`);
  assertEquals(blocked.status, 403);
  assertEquals(blocked.headers.get("content-type"), "text/plain");
  assertEquals(await blocked.text(), "Access denied by Lua middleware");
  const answer = await t.post("/v1/chat/completions", chat);
  assertEquals(answer.headers.get("x-powered-by"), "deepseek-ollama-bridge");
  assertEquals((await answer.json()).choices[0].message.content, "Hello from the fake upstream.");
  assertEquals(t.upstream.received[0].headers.get("x-modified-by"), "lua-plugin");
  t.upstream.plan({ status: 200, body: "plain text", headers: { "content-type": "text/plain" } });
  const plain = await t.post("/v1/echo", "x");
  assertEquals(await plain.text(), "plain text\n-- processed by the Lua plugin");
  const stream = await t.post("/v1/chat/completions", { ...chat, stream: true });
  assertEquals(stream.headers.get("x-powered-by"), "deepseek-ollama-bridge", "streams: headers only");
  assert((await stream.text()).endsWith("data: [DONE]\n\n"));
  assertEquals(t.upstream.calls, 3, "/blocked never reached the upstream");
  assert(t.logs.some((line) => line.includes('print="request: GET /blocked"')), "print goes to the log");
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_lua_calls_total\{hook="request",result="ok"\} 4/);
  assertMatch(metrics, /bridge_lua_duration_seconds_count\{hook="response"\} 3/);
});

Deno.test("a plugin rewriting the body changes what the upstream receives, and the cache key", async () => {
  await using dir = await tempCacheDir();
  const path = await script(
    dir.path,
    "rewrite.lua",
    `
local cjson = require("cjson")
function HandleServerRequest(request)
  if request.path == "/v1/chat/completions" then
    local body = cjson.decode(request.body)
    body.model = "qwen3:8b"
    request.body = cjson.encode(body)
  end
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await using t = await startTestBridge([
    "--enable-luajit",
    "--luajit-script",
    path,
    "--enable-cache",
    "--cache-dir",
    dir.path,
  ]);
  await (await t.post("/v1/chat/completions", { ...chat, model: "gpt-4o" })).text();
  assertEquals(JSON.parse(t.upstream.received[0].body).model, "qwen3:8b");
  await t.cacheSettled();
  // Another model name, rewritten to the same request: the same cache entry.
  const second = await t.post("/v1/chat/completions", { ...chat, model: "llama3" });
  assertEquals(second.headers.get("x-cache"), "HIT-DISK");
  await second.text();
  assertEquals(t.upstream.calls, 1);
});

Deno.test("require finds modules on --luajit-package-path and in the script's folder; cjson works", async () => {
  await using dir = await tempCacheDir();
  await Deno.mkdir(`${dir.path}/lib`);
  await script(
    `${dir.path}/lib`,
    "utils.lua",
    `local M = {} function M.shout(s) return string.upper(s) end return M`,
  );
  await script(dir.path, "near.lua", `return { tag = "near" }`);
  const path = await script(
    dir.path,
    "modules.lua",
    `
local cjson = require("cjson")
local utils = require("utils")
local near = require("near")
function HandleServerRequest(request)
  local decoded = cjson.decode('{"a":[1,2,3],"b":null,"c":{"d":"e"}}')
  request.headers["x-json"] = cjson.encode({ list = decoded.a, inner = decoded.c, empty = cjson.empty_array })
  request.headers["x-null"] = tostring(decoded.b == cjson.null or decoded.b == nil)
  request.headers["x-shout"] = utils.shout("hello") .. "-" .. near.tag
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await using t = await startTestBridge([
    "--enable-luajit",
    "--luajit-script",
    path,
    "--luajit-package-path",
    `${dir.path}/lib/?.lua`,
  ]);
  await (await t.post("/v1/chat/completions", chat)).text();
  const headers = t.upstream.received[0].headers;
  assertEquals(headers.get("x-shout"), "HELLO-near");
  assertEquals(JSON.parse(headers.get("x-json")!), { list: [1, 2, 3], inner: { d: "e" }, empty: [] });
  assertEquals(headers.get("x-null"), "true");
});

Deno.test("a runtime error fails that request with 500 plugin_error; the next request works", async () => {
  await using t = await luaBridge(
    "flaky.lua",
    `
function HandleServerRequest(request)
  if request.headers["x-crash"] then error("boom: deliberate") end
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  const failed = await t.post("/v1/chat/completions", chat, { "x-crash": "1" });
  assertEquals(failed.status, 500);
  const error = (await failed.json()).error;
  assertEquals(error.code, "plugin_error");
  assert(!error.message.includes("boom"), "details stay in the log");
  assert(
    t.logs.some((line) => line.includes("boom: deliberate") && line.includes("flaky.lua:3")),
    "with its line",
  );
  await stillServing(t);
});

Deno.test("while true do end is cut near --lua-timeout, and /health keeps answering meanwhile", async () => {
  await using t = await luaBridge(
    "loop.lua",
    `
function HandleServerRequest(request)
  if request.headers["x-loop"] then while true do end end
  return true, request
end
function HandleServerResponse(response) return response end
`,
    "--lua-timeout",
    "1500",
  );
  const start = performance.now();
  let loopAnsweredAt = 0;
  const looping = t.post("/v1/chat/completions", chat, { "x-loop": "1" }).then((response) => {
    loopAnsweredAt = performance.now();
    return response;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assertEquals((await fetch(`${t.url}/health`)).status, 200);
  assertEquals(loopAnsweredAt, 0, "the event loop is not blocked: /health answered while the script looped");
  const response = await looping;
  const elapsed = loopAnsweredAt - start;
  assertEquals(response.status, 500);
  await response.body?.cancel();
  // Cut at the --lua-timeout of 1.5 s: not before, and long before forever (a generous bound).
  assert(elapsed >= 1490 && elapsed < 8000, `cut after ${elapsed.toFixed(0)} ms`);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_lua_calls_total\{hook="request",result="timeout"\} 1/);
  // The state is usable again.
  await stillServing(t);
});

Deno.test("the sandbox: no os.execute, os.exit, io, package.loadlib; C modules fail with a clear message", async () => {
  await using dir = await tempCacheDir();
  const path = await script(
    dir.path,
    "sandbox.lua",
    `
function HandleServerRequest(request)
  request.headers["x-gone"] = table.concat({ type(os.execute), type(os.exit), type(os.remove), type(os.rename),
    type(os.tmpname), type(io), type(package.loadlib) }, ",")
  local ok, err = pcall(require, "lfs")
  request.headers["x-cmodule"] = string.gsub(tostring(err), "\\n", " ")
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await using t = await startTestBridge([
    "--enable-luajit",
    "--luajit-script",
    path,
    "--luajit-package-cpath",
    "/usr/lib/lua/?.so",
  ]);
  await (await t.post("/v1/chat/completions", chat)).text();
  const headers = t.upstream.received[0].headers;
  assertEquals(headers.get("x-gone"), "nil,nil,nil,nil,nil,nil,nil");
  assertMatch(headers.get("x-cmodule")!, /C modules cannot load in fengari/);
});

Deno.test("start-up: a missing script, a syntax error or a missing function exits 1 naming the problem", async () => {
  await using dir = await tempCacheDir();
  const cases: [string, string | undefined, RegExp][] = [
    ["missing.lua", undefined, /Cannot read the Lua script .*missing\.lua/],
    [
      "syntax.lua",
      "function HandleServerRequest(r)\n  return true, r\nen",
      /Lua syntax error: .*syntax\.lua:3:/,
    ],
    [
      "half.lua",
      "function HandleServerRequest(r) return true, r end",
      /does not define the function HandleServerResponse/,
    ],
  ];
  for (const [name, source, message] of cases) {
    if (source) await script(dir.path, name, source);
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "main.ts",
        "--listen",
        "127.0.0.1:0",
        "--enable-luajit",
        "--luajit-script",
        `${dir.path}/${name}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 1, name);
    assertMatch(text, message);
  }
});

Deno.test("identity plugin: answers are unchanged, including binary-safe bodies", async () => {
  await using dir = await tempCacheDir();
  const path = await script(dir.path, "identity.lua", IDENTITY);
  await using t = await startTestBridge([
    "--enable-luajit",
    "--luajit-script",
    path,
    "--luajit-instances-power",
    "2",
  ]);
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) => t.post("/v1/chat/completions", { ...chat, n: i })),
  );
  for (const answer of answers) {
    assertEquals((await answer.json()).choices[0].message.content, "Hello from the fake upstream.");
  }
  assertEquals(
    (await fetch(`${t.url}/nowhere`)).status,
    404,
    "paths outside /v1 and /api are still 404 after the hook",
  );
});
