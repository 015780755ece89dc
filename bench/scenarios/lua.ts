/**
 * Lua plugin (issues 7 and 17): what the hooks add to a request with a 2 KB body, measured end to end at one
 * connection (p50 of a plugin that only returns its input vs no plugin, same upstream), and the mean hook call
 * (the round trip to the Lua process included).
 */
import { median, runLoad } from "../lib/load.ts";
import { denoArgs, freePort, spawn } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const IDENTITY = `function HandleServerRequest(request) return true, request end
function HandleServerResponse(response) return response end
`;
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi ".repeat(650) }] }); // ~2 KB

export async function lua(context: BenchContext): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-lua-" });
  await Deno.writeTextFile(`${dir}/identity.lua`, IDENTITY);
  const upstreamPort = freePort();
  const ports = { plain: freePort(), plugin: freePort() };
  const upstream = await spawn(
    denoArgs("tests/fake_upstream.ts", "--port", String(upstreamPort)),
    upstreamPort,
    1,
  );
  const base = ["--ollama", `http://127.0.0.1:${upstreamPort}`];
  const plain = await spawn(
    denoArgs("main.ts", "--listen", `127.0.0.1:${ports.plain}`, ...base),
    ports.plain,
    0,
  );
  const plugin = await spawn(
    denoArgs(
      "main.ts",
      "--listen",
      `127.0.0.1:${ports.plugin}`,
      ...base,
      "--enable-luajit",
      "--luajit-script",
      `${dir}/identity.lua`,
    ),
    ports.plugin,
    0,
  );
  try {
    const p50 = (port: number) =>
      runLoad({
        url: `http://127.0.0.1:${port}/v1/chat/completions`,
        method: "POST",
        body: CHAT,
        connections: 1,
        seconds: context.seconds,
        core: 1,
      })
        .then((result) => result.p50Ms);
    await p50(ports.plain);
    await p50(ports.plugin);
    const samples = { plain: [] as number[], plugin: [] as number[] };
    for (let round = 0; round < context.rounds; round++) {
      samples.plain.push(await p50(ports.plain));
      samples.plugin.push(await p50(ports.plugin));
    }
    const metrics = await (await fetch(`http://127.0.0.1:${ports.plugin}/metrics`)).text();
    const hookSeconds = (hook: string) => {
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
        metric: "added p50, identity plugin",
        value: (median(samples.plugin) - median(samples.plain)) * 1000,
        unit: "µs",
        target: { op: "<=", value: 250 },
        detail: `1 conn: ${median(samples.plain).toFixed(3)} -> ${
          median(samples.plugin).toFixed(3)
        } ms; both hooks`,
      },
      {
        scenario: "lua plugin",
        metric: "mean hook call, process round trip",
        value: (hookSeconds("request") + hookSeconds("response")) / 2,
        unit: "µs",
        detail: `request ${hookSeconds("request").toFixed(0)} µs, response ${
          hookSeconds("response").toFixed(0)
        } µs`,
      },
    ];
  } finally {
    for (const proc of [plugin, plain, upstream]) await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
