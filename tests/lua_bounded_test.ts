/**
 * Bounded scripts (no loops, no calls but linear built-ins) run in the bridge's own process; every other script
 * runs in sandboxed Lua processes. The check errs only towards processes.
 */
import { boundedScript } from "../src/plugin/bounded_script.ts";
import { assert, assertEquals } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";

const hook = (body: string) =>
  `function HandleServerRequest(request) ${body} end
function HandleServerResponse(response) return response end`;

Deno.test("bounded: identity, header rewrites, built-in calls, words in strings and comments", () => {
  for (
    const source of [
      hook("return true, request"),
      hook('request.headers["x-method"] = string.lower(request.method) .. "!" return true, request'),
      hook(
        'print "seen" local t = cjson.decode(request.body) t.model = "m2" request.body = cjson.encode(t) ' +
          "return true, request",
      ),
      hook("request.headers.type = type(request.body) return true, request"),
      `-- while for repeat in a comment\n--[==[ goto ]==]\n${
        hook('local s = "for while" return true, request')
      }`,
      hook(
        "local s = [[repeat until]] if #request.body > 10 then return false, { status_code = 413 } end " +
          "return true, request",
      ),
    ]
  ) assertEquals(boundedScript(source), { bounded: true }, source);
});

Deno.test("not bounded: loops, jumps, method calls, own or computed calls, rebinding built-ins", () => {
  const cases: [string, RegExp][] = [
    [hook("while true do end"), /'while'/],
    [hook("for i = 1, 10 do end return true, request"), /'for'/],
    [hook("repeat until false"), /'repeat'/],
    [hook("::top:: goto top"), /'::'|'goto'/],
    [hook("return true, request.body:rep(10)"), /method call/],
    [hook('return true, string.rep("x", 2^31)'), /string\.rep/],
    [`local function f() return f() end ${hook("return f()")}`, /call of 'f'/],
    [hook("local t = setmetatable({}, {}) return true, request"), /setmetatable/],
    [hook('return string["rep"]("x", 9)'), /'string' used|computed function/],
    [hook("return (function() end)()"), /computed function/],
    [hook("local x = t[1].f(request) return true, request"), /computed/],
    [hook('local f = load("return 1") return true, request'), /'load'/],
    [hook('local m = require("m") return true, request'), /'require'/],
    [hook("pcall(error) return true, request"), /'pcall'/],
    [hook("local s = string s.lower = nil return true, request"), /'string' used/],
    [hook("string.lower = print return true, request"), /'string' used/],
    [`function HandleServerRequest(print) print("x") return true end`, /'print' used/],
    [
      `local function g() return string.lower("x") end local string = { lower = g } ${hook("return true")}`,
      /g|string/,
    ],
    [hook("_G.x = 1 return true, request"), /'_G'/],
    [hook('local s = "unfinished'), /unfinished/],
  ];
  for (const [source, reason] of cases) {
    const verdict = boundedScript(source);
    assert(!verdict.bounded && reason.test(verdict.reason), `${source}: ${JSON.stringify(verdict)}`);
  }
});

Deno.test("a bounded plugin runs in the bridge's process, an unbounded one in Lua processes: same answers", async () => {
  await using dir = await tempCacheDir();
  const scripts = {
    bounded: hook('request.headers["x-plugin"] = "seen" return true, request'),
    process: `local function seen(request) request.headers["x-plugin"] = "seen" return request end
function HandleServerRequest(request) return true, seen(request) end
function HandleServerResponse(response) return response end`,
  };
  for (const [kind, source] of Object.entries(scripts)) {
    const path = `${dir.path}/${kind}.lua`;
    await Deno.writeTextFile(path, source);
    await using t = await startTestBridge(["--enable-luajit", "--luajit-script", path]);
    const response = await t.post("/v1/chat/completions", {
      model: "m",
      messages: [{ role: "user", content: kind }],
    });
    assertEquals(response.status, 200);
    await response.body?.cancel();
    assertEquals(t.upstream.received.at(-1)?.headers.get("x-plugin"), "seen", kind);
    const said = t.logs.find((line) => line.includes("lua plugin"));
    assert(
      kind === "bounded"
        ? /runs in the bridge's process/.test(said!)
        : /sandboxed processes.*call of 'seen'/.test(said!),
      `${kind}: ${said}`,
    );
  }
});
