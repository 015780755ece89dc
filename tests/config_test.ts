import { ConfigExit, parseConfig } from "../src/config/index.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";

function exitOf(args: string[], env: Record<string, string> = {}): ConfigExit {
  try {
    parseConfig(args, env);
  } catch (error) {
    if (error instanceof ConfigExit) return error;
    throw error;
  }
  throw new Error("expected the configuration to be refused");
}

Deno.test("defaults are the original bridge's", () => {
  const config = parseConfig([], {});
  assertEquals(config.listen, { hostname: "127.0.0.1", port: 3000 });
  assertEquals(config.upstreams.defaultPool.members.map((member) => member.url.href), [
    "http://127.0.0.1:11434/",
  ]);
  assertEquals(config.upstreams.routes, []);
  assertEquals(config.upstreams.healthIntervalMs, 10_000);
  assertEquals(config.timeoutMs, 300_000);
  assertEquals(config.debug, false);
  assertEquals(config.rateLimit, 0);
  assertEquals(config.retry, { attempts: 0, minIntervalMs: 500, maxIntervalMs: 10_000 });
  assertEquals(config.maxBodyBytes, 32 * 1024 * 1024);
  assertEquals(config.keepaliveIntervalMs, 15_000);
  assertEquals(config.shutdownTimeoutMs, 30_000);
  assertEquals(config.upstreamClient, "pool");
  assert(Object.isFrozen(config));
});

Deno.test("short and long flags", () => {
  const config = parseConfig(
    ["-d", "-l", "0.0.0.0:8080", "-o", "https://api.deepseek.com/v1/", "-t", "1000"],
    {},
  );
  assertEquals(config.debug, true);
  assertEquals(config.listen, { hostname: "0.0.0.0", port: 8080 });
  assertEquals(config.upstreams.defaultPool.members[0].url.href, "https://api.deepseek.com/v1");
  assertEquals(config.timeoutMs, 1000);
  assertEquals(parseConfig(["--listen", "[::1]:3001"], {}).listen, { hostname: "::1", port: 3001 });
  assertEquals(parseConfig(["--max-body-size", "1MiB"], {}).maxBodyBytes, 1024 * 1024);
});

Deno.test("environment variables are read, and a flag wins over them", () => {
  const env = { BRIDGE_TIMEOUT: "2000", BRIDGE_DEBUG: "true", BRIDGE_OLLAMA: "http://10.0.0.2:11434" };
  const config = parseConfig([], env);
  assertEquals(config.timeoutMs, 2000);
  assertEquals(config.debug, true);
  assertEquals(config.upstreams.defaultPool.members[0].url.host, "10.0.0.2:11434");
  assertEquals(parseConfig(["-t", "3000"], env).timeoutMs, 3000);
  assertEquals(parseConfig([], { BRIDGE_DEBUG: "0" }).debug, false);
});

Deno.test("a value out of range exits 2 with one line naming the flag, the value and the range", () => {
  const exit = exitOf(["--timeout", "999"]);
  assertEquals(exit.exitCode, 2);
  assertEquals(exit.message.split("\n").length, 1);
  assertMatch(
    exit.message,
    /--timeout <ms>' argument '999' is invalid\. Expected a whole number from 1000 to 86400000\./,
  );
  assertMatch(
    exitOf([], { BRIDGE_RATE_LIMIT: "70000" }).message,
    /value '70000' from env 'BRIDGE_RATE_LIMIT'.*0 to 65535/,
  );
  assertEquals(exitOf(["--listen", "localhost"]).exitCode, 2);
  assertEquals(exitOf(["--ollama", "ftp://host"]).exitCode, 2);
  assertEquals(exitOf(["--timeout", "12abc"]).exitCode, 2);
  assertEquals(exitOf(["--unknown-flag"]).exitCode, 2);
  assertMatch(exitOf(["-i", "5000", "-m", "1000"]).message, /--retry-min-interval \(5000\) must not exceed/);
});

Deno.test("--help lists every flag with its default, range and environment variable; --version", () => {
  const help = exitOf(["--help"]);
  assertEquals(help.exitCode, 0);
  for (
    const text of [
      "-l, --listen",
      "default: 127.0.0.1:3000",
      "env: BRIDGE_LISTEN",
      "1000-86400000",
      "BRIDGE_TIMEOUT",
    ]
  ) {
    assert(help.message.includes(text), `help mentions ${text}`);
  }
  const version = exitOf(["-V"]);
  assertEquals(version.exitCode, 0);
  assertMatch(version.message, /^\d+\.\d+\.\d+$/);
});

Deno.test("main.ts exits 2 on a bad flag, with the message on stderr", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", "--allow-net", "--allow-read", "main.ts", "--timeout", "5"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(output.code, 2);
  assertMatch(new TextDecoder().decode(output.stderr), /argument '5' is invalid/);
});

Deno.test("only the environment handed to parseConfig counts, not the process's", () => {
  const saved = Deno.env.get("BRIDGE_TIMEOUT");
  Deno.env.set("BRIDGE_TIMEOUT", "4000");
  try {
    assertEquals(parseConfig([], {}).timeoutMs, 300_000);
    assertEquals(parseConfig([], { BRIDGE_TIMEOUT: "5000" }).timeoutMs, 5000);
  } finally {
    if (saved === undefined) Deno.env.delete("BRIDGE_TIMEOUT");
    else Deno.env.set("BRIDGE_TIMEOUT", saved);
  }
});

Deno.test("an unreadable switch in the environment exits 2 like a bad flag", async () => {
  const refused = exitOf([], { BRIDGE_DEBUG: "maybe" });
  assertEquals(refused.exitCode, 2);
  assertMatch(refused.message, /--debug.*'maybe'.*BRIDGE_DEBUG.*true or false/);
  assertEquals(parseConfig([], { BRIDGE_ENABLE_CACHE: "off" }).cache, undefined);
  assert(parseConfig([], { BRIDGE_ENABLE_CACHE: "yes" }).cache !== undefined);
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", "--allow-net", "--allow-read", "main.ts"],
    env: { BRIDGE_DEBUG: "maybe" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(output.code, 2);
  const stderr = new TextDecoder().decode(output.stderr);
  assertMatch(stderr, /BRIDGE_DEBUG/);
  assert(!/Uncaught|at /.test(stderr), `a clear message, not a stack trace: ${stderr}`);
});

Deno.test("--replicas-hint divides the fleet's --rate-limit and --max-inflight among the replicas, rounding up", () => {
  const config = parseConfig(["--replicas-hint", "3", "--rate-limit", "10", "--max-inflight", "4"], {});
  assertEquals([config.rateLimit, config.admission.maxInflight, config.replicas], [4, 2, 3]);
  assertEquals(parseConfig(["--max-inflight", "4"], {}).admission.maxInflight, 4);
  assertEquals(exitOf(["--replicas-hint", "0"]).exitCode, 2);
});

Deno.test("--ollama repeated or comma-separated makes a pool; #N weights a member; --route and BRIDGE_ROUTE", () => {
  const config = parseConfig([
    "--ollama",
    "http://10.0.0.1:11434#3,http://u:p@10.0.0.2:11434",
    "-o",
    "http://10.0.0.3:11434",
    "--route",
    "llama3*=http://10.0.1.1:11434,http://10.0.1.2:11434#2",
    "--route",
    "qwen?=https://api.example.com/v1",
    "--health-interval",
    "2500",
  ], {});
  const { defaultPool, routes, healthIntervalMs } = config.upstreams;
  assertEquals(defaultPool.members.map((member) => [member.url.host, member.weight]), [
    ["10.0.0.1:11434", 3],
    ["10.0.0.2:11434", 1],
    ["10.0.0.3:11434", 1],
  ]);
  assertEquals(defaultPool.members[1].url.username, "");
  assertEquals(defaultPool.members[1].basicAuth, `Basic ${btoa("u:p")}`);
  assertEquals(routes.map((route) => [route.models, route.members.length]), [["llama3*", 2], ["qwen?", 1]]);
  assertEquals(routes[0].members[1].weight, 2);
  assertEquals(healthIntervalMs, 2500);
  const fromEnv = parseConfig([], {
    BRIDGE_OLLAMA: "http://10.0.0.1:11434,http://10.0.0.2:11434",
    BRIDGE_ROUTE: "big*=http://10.0.2.1:11434; small*=http://10.0.2.2:11434",
  }).upstreams;
  assertEquals(fromEnv.defaultPool.members.length, 2);
  assertEquals(fromEnv.routes.map((route) => route.models), ["big*", "small*"]);
});

Deno.test("bad pools and routes exit 2 with what was expected", () => {
  for (
    const [args, expected] of [
      [["--ollama", "http://a:1#0"], /weight from 1 to 1000/],
      [["--ollama", "http://a:1,http://a:1"], /listed twice/],
      [["--route", "llama3"], /<model-glob>=<url>/],
      [["--route", "=http://a:1"], /<model-glob>=<url>/],
      [["--route", "x=ftp://a"], /http\(s\) URL/],
      [["--health-interval", "-1"], /from 0 to 3600000/],
    ] as const
  ) {
    const exit = exitOf([...args]);
    assertEquals(exit.exitCode, 2, args.join(" "));
    assertMatch(exit.message, expected);
  }
});
