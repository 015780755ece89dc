/**
 * `deno task bench`: measures the bridge against its targets in one run, prints a table and writes
 * bench/results.json. `--quick` runs one short round (for a smoke test); the default takes about a minute.
 */
import { hasWrk, loadGenerator } from "./lib/load.ts";
import { hasTaskset } from "./lib/procs.ts";
import { printTable, type Row, writeResults } from "./lib/report.ts";
import { admission } from "./scenarios/admission.ts";
import { affinity } from "./scenarios/affinity.ts";
import { cache } from "./scenarios/cache.ts";
import { fairShare } from "./scenarios/fair_share.ts";
import { lua } from "./scenarios/lua.ts";
import { passthrough } from "./scenarios/passthrough.ts";
import { redis } from "./scenarios/redis.ts";
import { sideBySide } from "./scenarios/side_by_side.ts";
import { think } from "./scenarios/think.ts";
import { transports } from "./scenarios/transports.ts";

const quick = Deno.args.includes("--quick");
const fill = Number(
  Deno.args.find((arg) => arg.startsWith("--fill="))?.slice(7) ?? (quick ? 5_000 : 100_000),
);
const context = quick
  ? { rounds: 1, seconds: 1, ttfbSamples: 20, fillEntries: fill }
  : { rounds: 3, seconds: 3, ttfbSamples: 300, fillEntries: fill };

console.log(
  `load generator: ${loadGenerator()}; pinning: ${
    hasTaskset ? "taskset (servers core 0, load core 1)" : "none"
  }`,
);
if (!hasWrk) console.log("note: without wrk the load generator, not the bridge, limits the request rates");

const rows: Row[] = [];
const scenarios = {
  sideBySide,
  passthrough,
  transports,
  fairShare,
  think,
  cache,
  admission,
  lua,
  redis,
  affinity,
};
const only = Deno.args.find((arg) => arg.startsWith("--only="))?.slice(7).split(",");
for (const [name, run] of Object.entries(scenarios)) {
  if (!only || only.includes(name)) rows.push(...await run(context));
}

console.log();
printTable(rows);
const path = new URL("./results.json", import.meta.url);
await writeResults(path.pathname, rows, {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  cores: navigator.hardwareConcurrency,
  loadGenerator: hasWrk ? "wrk" : "deno",
  quick,
});
console.log(`\nwrote ${path.pathname}`);
