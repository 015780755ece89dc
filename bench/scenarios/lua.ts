/**
 * Lua plugin (issues 7 and 17): what the hooks add to a request with a 2 KB body, measured end to end at one
 * connection (p50 with an identity plugin vs no plugin, same upstream), and the mean hook call. Two identity
 * plugins: a bounded one (runs in the bridge's process) and one that calls a function of its own (so it is not
 * provably bounded and runs in a sandboxed Lua process: the cost of a round trip to it).
 */
import { chatLoad, median } from "../lib/load.ts";
import { Servers } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const SCRIPTS = {
  "in-process": `function HandleServerRequest(request) return true, request end
function HandleServerResponse(response) return response end
`,
  "lua process": `local function same(value) return value end
function HandleServerRequest(request) return true, same(request) end
function HandleServerResponse(response) return same(response) end
`,
};
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi ".repeat(650) }] }); // ~2 KB

export async function lua(context: BenchContext): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-lua-" });
  try {
    // Declared in the block: the servers stop before their folder goes.
    await using servers = new Servers();
    const start = (script: string, ...args: string[]) => servers.start(0, script, ...args);
    const upstreamPort = await servers.start(1, "tests/fake_upstream.ts", "--port", "{port}");
    const base = ["--listen", "127.0.0.1:{port}", "--ollama", `http://127.0.0.1:${upstreamPort}`];
    const plain = await start("main.ts", ...base);
    const rows: Row[] = [];
    for (const [kind, source] of Object.entries(SCRIPTS)) {
      await Deno.writeTextFile(`${dir}/${kind}.lua`, source);
      const plugin = await start(
        "main.ts",
        ...base,
        "--enable-luajit",
        "--luajit-script",
        `${dir}/${kind}.lua`,
      );
      rows.push(...await measure(context, kind, plain, plugin));
    }
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function measure(context: BenchContext, kind: string, plain: number, plugin: number): Promise<Row[]> {
  const p50 = (port: number) => chatLoad(port, 1, context.seconds, CHAT).then((result) => result.p50Ms);
  await p50(plain);
  await p50(plugin);
  const samples = { plain: [] as number[], plugin: [] as number[] };
  for (let round = 0; round < context.rounds; round++) {
    samples.plain.push(await p50(plain));
    samples.plugin.push(await p50(plugin));
  }
  const metrics = await (await fetch(`http://127.0.0.1:${plugin}/metrics`)).text();
  const hookMicros = (hook: string) => {
    const sum = Number(
      new RegExp(`bridge_lua_duration_seconds_sum\\{hook="${hook}"\\} ([\\d.e-]+)`).exec(metrics)?.[1],
    );
    const count = Number(
      new RegExp(`bridge_lua_duration_seconds_count\\{hook="${hook}"\\} (\\d+)`).exec(metrics)?.[1],
    );
    return (sum / count) * 1e6;
  };
  return [
    {
      scenario: "lua plugin",
      metric: `added p50, identity plugin (${kind})`,
      value: (median(samples.plugin) - median(samples.plain)) * 1000,
      unit: "µs",
      target: { op: "<=", value: 250 },
      detail: `1 conn: ${median(samples.plain).toFixed(3)} -> ${
        median(samples.plugin).toFixed(3)
      } ms; both hooks`,
    },
    {
      scenario: "lua plugin",
      metric: `mean hook call (${kind})`,
      value: (hookMicros("request") + hookMicros("response")) / 2,
      unit: "µs",
      detail: `request ${hookMicros("request").toFixed(0)} µs, response ${
        hookMicros("response").toFixed(0)
      } µs`,
    },
  ];
}
