/**
 * Issue 17: Lua plugins that cannot hang, exhaust or escape the bridge. Runaway scripts (count hook out of
 * reach, errors swallowed, loops inside built-ins) are stopped for real: the bridge's processes use under a
 * second of CPU in the 5 s after the answer. Memory bombs stop at --lua-memory-limit. Files outside the
 * script's folder and the package path cannot be read. Bodies cross as bytes.
 */
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";
import { type Child, spawnBridge, startTestBridge, tempCacheDir } from "./harness.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { ScriptedUpstream } from "./scripted_upstream.ts";

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });

/** CPU time (user + system, ms) of a process and all its descendants, from /proc. */
function treeCpuMs(root: number): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const fields = Deno.readTextFileSync(`/proc/${entry.name}/stat`).split(") ")[1].split(" ");
      stats.set(Number(entry.name), {
        ppid: Number(fields[1]),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, { ppid }] of stats) if (tree.has(ppid) && !tree.has(pid)) (tree.add(pid), grew = true);
  }
  let ticks = 0;
  for (const pid of tree) ticks += stats.get(pid)?.ticks ?? 0;
  return ticks * 10;
}

async function withPlugin(
  source: string,
  flags: string[],
  fn: (bridge: Child) => Promise<void>,
): Promise<void> {
  await using dir = await tempCacheDir();
  await Deno.writeTextFile(`${dir.path}/plugin.lua`, source);
  const upstream = new FakeUpstream();
  const bridge = await spawnBridge(
    upstream.url,
    "--enable-luajit",
    "--luajit-script",
    `${dir.path}/plugin.lua`,
    ...flags,
  );
  try {
    await fn(bridge);
  } finally {
    bridge.process.kill("SIGTERM");
    await bridge.process.status;
    await upstream.close();
  }
}

const RUNAWAYS: Record<string, string> = {
  "an error-swallowing pcall loop": "while true do pcall(function() while true do end end) end",
  "a coroutine loop": "local co = coroutine.wrap(function() while true do end end) co()",
  "a pathological string.find": 'string.find(("a"):rep(5000), ("a-"):rep(60) .. "b")',
  "a huge string.rep": 'local s = string.rep("x", 2^27) request.headers["x"] = #s',
};

for (const [name, code] of Object.entries(RUNAWAYS)) {
  Deno.test({
    name:
      `a runaway hook (${name}) is stopped at --lua-timeout: 500, then no CPU burnt, and the pool refills`,
    ignore: Deno.build.os !== "linux",
    async fn() {
      const source = `function HandleServerRequest(request)
  if request.headers["x-run"] then ${code} end
  return true, request
end
function HandleServerResponse(response) return response end
`;
      await withPlugin(source, ["--lua-timeout", "300"], async (bridge) => {
        const started = performance.now();
        const answer = await fetch(`${bridge.url}/v1/chat/completions`, {
          method: "POST",
          body: CHAT,
          headers: { "x-run": "1" },
        });
        assertEquals(answer.status, 500);
        assertEquals((await answer.json()).error.code, "plugin_error");
        assert(performance.now() - started < 5000, "answered near the timeout, not when the loop would end");
        const before = treeCpuMs(bridge.process.pid);
        await new Promise((resolve) => setTimeout(resolve, 5000));
        const burnt = treeCpuMs(bridge.process.pid) - before;
        assert(burnt < 1000, `${burnt} ms of CPU in the 5 s after the answer`);
        // The pool was refilled: plain requests are served by a fresh state.
        for (let i = 0; i < 3; i++) {
          const next = await fetch(`${bridge.url}/v1/chat/completions`, { method: "POST", body: CHAT });
          assertEquals(next.status, 200);
          await next.body?.cancel();
        }
      });
    },
  });
}

Deno.test({
  name: "memory bombs stop at --lua-memory-limit: 500, the state is replaced, memory stays bounded",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const source = `function HandleServerRequest(request)
  local mode = request.headers["x-bomb"]
  if mode == "table" then local t = {} for i = 1, 1e9 do t[i] = i end end
  if mode == "concat" then local s = "x" for i = 1, 64 do s = s .. s end end
  return true, request
end
function HandleServerResponse(response) return response end
`;
    await withPlugin(source, ["--lua-timeout", "20000", "--lua-memory-limit", "64MiB"], async (bridge) => {
      for (const mode of ["table", "concat"]) {
        const answer = await fetch(`${bridge.url}/v1/chat/completions`, {
          method: "POST",
          body: CHAT,
          headers: { "x-bomb": mode },
        });
        assertEquals(answer.status, 500, mode);
        await answer.body?.cancel();
        assertMatch(bridge.output(), /lua plugin call went over --lua-memory-limit/);
        const next = await waitFor(async () => {
          const response = await fetch(`${bridge.url}/v1/chat/completions`, { method: "POST", body: CHAT });
          await response.body?.cancel();
          return response.status === 200 ? response : undefined;
        }, { message: "a fresh state serves" });
        assertEquals(next.status, 200);
      }
      assertEquals(
        bridge.output().match(/went over --lua-memory-limit/g)?.length,
        2,
        "both bombs were stopped by it",
      );
      const rss = Number(
        /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${bridge.process.pid}/status`))![1],
      );
      assert(rss * 1024 < 350 * 1024 * 1024, `the bridge's own RSS: ${rss} kB`);
    });
  },
});

Deno.test("files outside the script's folder cannot be read: no io, dofile, loadfile, binary load; require stays put", async () => {
  await using dir = await tempCacheDir();
  await Deno.writeTextFile(
    `${dir.path}/plugin.lua`,
    `function HandleServerRequest(request)
  local probes = {}
  probes[#probes + 1] = type(io) .. "," .. type(dofile) .. "," .. type(loadfile) .. "," .. type(string.dump)
  probes[#probes + 1] = type(os.execute) .. "," .. type(os.getenv) .. "," .. type(os.time) .. "," .. type(debug.sethook)
  package.path = "/etc/?;/etc/?.lua"
  package.searchers = { function() return function() return "evil" end end }
  local ok, err = pcall(require, "passwd")
  probes[#probes + 1] = tostring(ok)
  local ok2 = pcall(require, "../../../../etc/passwd")
  probes[#probes + 1] = tostring(ok2)
  local f, lerr = load("\\27Lua binary")
  probes[#probes + 1] = tostring(f) .. ":" .. tostring(lerr ~= nil)
  probes[#probes + 1] = tostring(require("helper").value)
  request.headers["x-probes"] = table.concat(probes, "|")
  return true, request
end
function HandleServerResponse(response) return response end
`,
  );
  await Deno.writeTextFile(`${dir.path}/helper.lua`, "return { value = 42 }");
  await using t = await startTestBridge(["--enable-luajit", "--luajit-script", `${dir.path}/plugin.lua`]);
  await (await t.post("/v1/chat/completions", CHAT)).body?.cancel();
  const probes = t.upstream.received[0].headers.get("x-probes")!.split("|");
  assertEquals(probes[0], "nil,nil,nil,nil");
  assertEquals(probes[1], "nil,nil,function,nil");
  assertEquals(probes[2], "false", "package.path and searchers changes are ignored");
  assertEquals(probes[3], "false", "no path traversal through module names");
  assertEquals(probes[4], "nil:true", "binary chunks are refused");
  assertEquals(probes[5], "42", "modules beside the script still load");
});

Deno.test("a binary body through identity hooks arrives byte-identical upstream, and back at the client", async () => {
  await using dir = await tempCacheDir();
  await Deno.writeTextFile(
    `${dir.path}/plugin.lua`,
    "function HandleServerRequest(request) return true, request end\nfunction HandleServerResponse(response) return response end\n",
  );
  const body = new Uint8Array(4096).map((_, i) => (i * 37 + 11) % 256); // not UTF-8
  await using upstream = new ScriptedUpstream((request) => ({
    write: [
      `HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${request.raw.length}\r\n\r\n`,
      request.raw,
    ],
  }));
  await using t = await startTestBridge(["--enable-luajit", "--luajit-script", `${dir.path}/plugin.lua`], {
    upstreamUrl: upstream.url,
  });
  const answer = await fetch(`${t.url}/v1/files`, { method: "POST", body });
  const back = new Uint8Array(await answer.arrayBuffer());
  assertEquals(upstream.received[0].raw, body, "the upstream got the same bytes");
  assertEquals(back, body, "the client got them back unchanged through the response hook");
});
