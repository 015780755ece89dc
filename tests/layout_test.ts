/**
 * The layout keeps its promises (docs/architecture.md): no import cycle among the project's modules (type
 * imports included, as Deno's module graph has them), dependencies pointing one way between the folders of
 * src/, and no source file over 400 lines.
 */
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { assert, assertEquals } from "./assert.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url));

/** What each folder of src/ may import besides itself: the request flow, read from the server down to core. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  config: ["core"],
  observe: ["core", "config"],
  stream: ["core"],
  redis: ["core", "config", "observe"],
  filter: ["core", "config", "stream"],
  upstream: ["core", "config", "observe", "stream", "redis"],
  cache: ["core", "config", "observe", "stream", "redis", "upstream"],
  plugin: ["core", "config", "observe"],
  async: ["core", "config", "observe", "stream", "redis", "upstream", "cache"],
  server: ["core", "config", "observe", "stream", "redis", "filter", "upstream", "cache", "plugin", "async"],
};

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** The project's own modules reachable from `entry`, each with the project modules it imports. */
async function moduleGraph(entry: string): Promise<Map<string, Set<string>>> {
  const output = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry], cwd: ROOT })
    .output();
  assert(output.success, new TextDecoder().decode(output.stderr));
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as { modules: InfoModule[] };
  const own = (specifier: string) =>
    specifier.startsWith("file:") ? relative(ROOT, fromFileUrl(specifier)) : undefined;
  const graph = new Map<string, Set<string>>();
  for (const module of info.modules) {
    const from = own(module.specifier);
    if (!from) continue;
    const edges = new Set<string>();
    for (const dependency of module.dependencies ?? []) {
      for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
        const to = target && own(target);
        if (to) edges.add(to);
      }
    }
    graph.set(from, edges);
  }
  return graph;
}

async function projectGraph(): Promise<Map<string, Set<string>>> {
  const graph = await moduleGraph("main.ts");
  // A Lua process under `deno run` is started by path, not imported: a root of its own.
  for (const entry of ["src/plugin/child.ts", "src/plugin/child_watchdog.ts"]) {
    for (const [from, edges] of await moduleGraph(entry)) graph.set(from, edges);
  }
  return graph;
}

/** Every cycle's modules (strongly connected components of more than one module, or a self-import). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || graph.get(node)?.has(node)) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

const folderOf = (path: string) => /^src\/([^/]+)\//.exec(path)?.[1];

Deno.test("layout: no import cycle among the project's modules", async () => {
  const graph = await projectGraph();
  assert(graph.size > 40, `the graph has the whole program (${graph.size} modules)`);
  assertEquals(cycles(graph), []);
});

Deno.test("layout: cycle detection finds a cycle when there is one", () => {
  const graph = new Map<string, Set<string>>([["a", new Set(["b"])], ["b", new Set(["c"])], [
    "c",
    new Set(["a"]),
  ]]);
  assertEquals(cycles(graph), [["a", "b", "c"]]);
});

Deno.test("layout: each folder of src/ imports only the folders below it in the request flow", async () => {
  const graph = await projectGraph();
  const wrong: string[] = [];
  for (const [from, edges] of graph) {
    const source = folderOf(from);
    if (!source) continue;
    assert(source in MAY_IMPORT, `${from}: src/${source}/ is not in the layout (docs/architecture.md)`);
    for (const to of edges) {
      const target = folderOf(to);
      if (to === "main.ts") wrong.push(`${from} -> main.ts`);
      else if (target && target !== source && !MAY_IMPORT[source].includes(target)) {
        wrong.push(`${from} -> ${to}`);
      }
    }
  }
  assertEquals(wrong, []);
});

Deno.test("layout: no source file is over 400 lines", async () => {
  const long: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(`${ROOT}${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (path.endsWith(".ts")) {
        const lines = (await Deno.readTextFile(`${ROOT}${path}`)).split("\n").length;
        if (lines > 400) long.push(`${path}: ${lines} lines`);
      }
    }
  };
  for (const dir of ["src", "tests", "bench", "scripts"]) await walk(dir);
  assertEquals(long, []);
});
