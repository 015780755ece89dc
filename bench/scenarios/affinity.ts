/**
 * Conversation affinity (issue 21) on real llama.cpp inference. Two llama.cpp servers (node-llama-cpp, 2 slots
 * each, a small generated GGUF model) behind the bridge as one pool. Four conversations that share a system
 * prompt run three turns each through the bridge; turn 3's prompt evaluation is timed on the member that had the
 * conversation (where affinity sends it) and, for four more conversations, on the other member (where a balancer
 * without affinity sends it whenever it picks another member: half the time with two members, (n-1)/n with n).
 *
 * node-llama-cpp is a Node addon whose optional packages Deno's npm resolver refuses (`@node-llama-cpp/linux-
 * riscv64` is not published for 3.22.1), so it is installed with npm into a cache folder, and the llama servers run
 * on Node. Without node and npm the scenario says so and is skipped.
 */
import { writeTinyModel } from "../lib/tiny_gguf.ts";
import { median } from "../lib/load.ts";
import { commandExists, Servers } from "../lib/procs.ts";
import type { Row } from "../lib/report.ts";
import type { BenchContext } from "./passthrough.ts";

const NODE_LLAMA_CPP = "node-llama-cpp@3.22.1";
const SCENARIO = "affinity (llama.cpp)";
const CONVERSATIONS = 4;

interface Timings {
  prompt_n: number;
  prompt_ms: number;
  cache_n: number;
}

interface Turn {
  timings: Timings;
  /** The port of the llama server that answered. */
  server: string;
}

export async function affinity(_context: BenchContext): Promise<Row[]> {
  if (!await commandExists("node") || !await commandExists("npm")) {
    console.log(`${SCENARIO}: skipped, node and npm are needed to run node-llama-cpp`);
    return [];
  }
  const entry = await installNodeLlamaCpp();
  const dir = await Deno.makeTempDir({ prefix: "bridge-affinity-" });
  try {
    const modelPath = `${dir}/tiny.gguf`;
    await writeTinyModel(modelPath);
    await using servers = new Servers();
    const llama = (core: number) =>
      servers.startProgram(core, ["node", "bench/lib/llama_server.mjs", entry, modelPath, "{port}", "2"]);
    const members = [await llama(0), await llama(0)];
    const bridge = await servers.start(
      1,
      "main.ts",
      "--listen",
      "127.0.0.1:{port}",
      ...members.flatMap((port) => ["--ollama", `http://127.0.0.1:${port}`]),
    );
    const viaBridge = `http://127.0.0.1:${bridge}`;

    // Affinity: every turn through the bridge.
    const kept = conversations("kept");
    const keptTurns = await runTurns(kept, (messages) => chat(viaBridge, messages));
    const stayed = keptTurns.filter(([, second, third]) => second.server === third.server).length;

    // Without: turns 1 and 2 through the bridge, turn 3 straight to the member that did not have turn 2.
    const moved = conversations("moved");
    const movedTurns = await runTurns(moved, (messages, turn, previous) => {
      if (turn < 3) return chat(viaBridge, messages);
      const other = members.find((port) => String(port) !== previous!.server)!;
      return chat(`http://127.0.0.1:${other}`, messages);
    });

    const third = (turns: Turn[][]) => turns.map((conversation) => conversation[2].timings);
    const withAffinity = third(keptTurns);
    const without = third(movedTurns);
    const ms = (list: Timings[]) => median(list.map((timings) => timings.prompt_ms));
    /** A turn-3 row: the median prompt evaluation time, and how many tokens were evaluated and reused. */
    const turnRow = (metric: string, list: Timings[], more: string): Row => ({
      scenario: SCENARIO,
      metric,
      value: ms(list),
      unit: "ms",
      detail: `${median(list.map((t) => t.prompt_n))} tokens evaluated, ${
        median(list.map((t) => t.cache_n))
      } reused; ${more}`,
    });
    const firstTurn = median(keptTurns.map((conversation) => conversation[0].timings.prompt_ms));
    return [
      turnRow(
        "turn 3 prompt eval, affinity (same member)",
        withAffinity,
        `turn 3 on turn 2's member ${stayed}/${CONVERSATIONS}`,
      ),
      turnRow("turn 3 prompt eval, other member", without, `turn 1 took ${firstTurn.toFixed(0)} ms`),
      {
        scenario: SCENARIO,
        metric: "turn 3 prompt eval saved by affinity",
        value: 1 - ms(withAffinity) / ms(without),
        unit: "ratio",
        detail: "per turn that a balancer without affinity sends elsewhere: (n-1)/n of turns with n members",
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

type Message = { role: string; content: string };

/** Conversations that share a system prompt, each with a long first question of its own. */
function conversations(label: string): Message[][] {
  const system = "You are a careful assistant who answers questions about the bridge's configuration. "
    .repeat(4);
  return Array.from({ length: CONVERSATIONS }, (_, index) => [
    { role: "system", content: system },
    {
      role: "user",
      content: `Question ${label} ${index}: ` +
        `here is the whole log of conversation ${label}-${index}, line ${index}, please read it closely. `
          .repeat(8),
    },
  ]);
}

/** Runs turns 1 to 3 of every conversation, turn by turn across the conversations. */
async function runTurns(
  all: Message[][],
  send: (messages: Message[], turn: number, previous?: Turn) => Promise<Turn>,
): Promise<Turn[][]> {
  const turns: Turn[][] = all.map(() => []);
  for (let turn = 1; turn <= 3; turn++) {
    for (const [index, messages] of all.entries()) {
      const answer = await send(messages, turn, turns[index].at(-1));
      turns[index].push(answer);
      messages.push({ role: "assistant", content: "ok" }, {
        role: "user",
        content: `Follow-up ${turn}: go on.`,
      });
    }
  }
  return turns;
}

async function chat(base: string, messages: Message[]): Promise<Turn> {
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", messages }),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`llama server: ${response.status} ${JSON.stringify(json)}`);
  return { timings: json.timings, server: json.system_fingerprint };
}

/** node-llama-cpp in a cache folder (installed once, about 700 MB with its prebuilt binaries); its entry file. */
async function installNodeLlamaCpp(): Promise<string> {
  const home = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  const prefix = `${home}/bridge-bench/${NODE_LLAMA_CPP.replace("@", "-")}`;
  const entry = `${prefix}/node_modules/node-llama-cpp/dist/index.js`;
  try {
    await Deno.stat(entry);
    return entry;
  } catch { /* not installed yet */ }
  console.log(`${SCENARIO}: installing ${NODE_LLAMA_CPP} into ${prefix}`);
  await Deno.mkdir(prefix, { recursive: true });
  const { success } = await new Deno.Command("npm", {
    args: ["install", "--prefix", prefix, "--no-audit", "--no-fund", "--ignore-scripts", NODE_LLAMA_CPP],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`npm install ${NODE_LLAMA_CPP} failed`);
  return entry;
}
