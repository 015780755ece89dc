/** The deployment files agree with the program: flags, variables, endpoints, metrics, and a valid unit. */
import { parseConfig } from "../src/config/index.ts";
import { ConfigExit } from "../src/config/index.ts";
import { assert, assertEquals } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";

const DEPLOY = new URL("../docs/deploy/", import.meta.url);
const read = (name: string) => Deno.readTextFile(new URL(name, DEPLOY));
const FILES = [
  "deepseek-ollama-bridge.service",
  "env.example",
  "Dockerfile",
  "kubernetes/deployment.yaml",
  "kubernetes/common/servicemonitor.yaml",
  "kubernetes/scale-out/deployment.yaml",
];

function helpText(): string {
  try {
    parseConfig(["--help"], {});
  } catch (error) {
    if (error instanceof ConfigExit) return error.message;
  }
  throw new Error("--help did not exit");
}

Deno.test("every flag and BRIDGE_* variable the deployment files use exists", async () => {
  const help = helpText();
  for (const file of FILES) {
    const text = await read(file);
    for (const [flag] of text.matchAll(/(?<![\w-])--[a-z][a-z0-9-]+/g)) {
      if (
        [
          "--from",
          "--chown",
          "--from-file",
          "--from-literal",
          "--now",
          "--ignore-missing",
          "--frozen",
          "--allow-net",
          "--allow-env",
          "--allow-read",
          "--allow-write",
          "--allow-run",
          "--unstable-kv",
          "--unstable-no-legacy-abort",
          "--output",
          "--include",
          "--ulimit",
        ].includes(flag)
      ) continue;
      assert(
        help.includes(`${flag} `) || help.includes(`${flag},`) || help.includes(`${flag}\n`),
        `${file}: ${flag} is a flag`,
      );
    }
    for (const [name] of text.matchAll(/BRIDGE_[A-Z_]+/g)) {
      // --help wraps lines: the variable may follow a line break instead of "env: ".
      assert(
        new RegExp(`env:\\s+${name}\\b`).test(help) || name === "BRIDGE_API_KEYS",
        `${file}: ${name} is a variable`,
      );
    }
  }
});

Deno.test("the deployment's arguments parse: the container would start", async () => {
  const deployment = await read("kubernetes/deployment.yaml");
  const args = [...deployment.matchAll(/^\s+- (--[a-z-]+(?:=\S+)?)$/gm)].map((match) => match[1]);
  assert(args.length > 5);
  const config = parseConfig(args.map((arg) => arg.replace("/keys/", "./keys/")), {
    BRIDGE_METRICS_KEY: "m",
  });
  assertEquals(config.listen, { hostname: "0.0.0.0", port: 3000 });
  assertEquals(config.shutdownTimeoutMs, 30_000);
  // The grace period leaves the drain time to finish.
  const grace = Number(/terminationGracePeriodSeconds: (\d+)/.exec(deployment)![1]);
  assert(grace * 1000 > config.shutdownTimeoutMs);
  assert(deployment.includes("path: /health") && deployment.includes("path: /ready"));
  const unit = await read("deepseek-ollama-bridge.service");
  assert(Number(/TimeoutStopSec=(\d+)/.exec(unit)![1]) * 1000 > config.shutdownTimeoutMs);
});

Deno.test("the scale-out deployment: replicas sharing Redis, rolling updates, no volume to claim", async () => {
  const deployment = await read("kubernetes/scale-out/deployment.yaml");
  const args = [...deployment.matchAll(/^\s+- (--[a-z-]+(?:=\S+)?)$/gm)].map((match) => match[1]);
  const config = parseConfig(args.map((arg) => arg.replace("/keys/", "./keys/")), {
    BRIDGE_REDIS_URL: "redis://bridge-redis:6379/0",
    BRIDGE_REDIS_SECRET: "s",
  });
  assertEquals(config.redis?.url, "redis://bridge-redis:6379/0");
  assert(Number(/replicas: (\d+)/.exec(deployment)![1]) >= 2);
  assert(deployment.includes("type: RollingUpdate") && deployment.includes("path: /ready"));
  assert(!deployment.includes("persistentVolumeClaim"), "no ReadWriteOnce volume");
  const compose = await Deno.readTextFile(new URL("compose/docker-compose.yaml", DEPLOY));
  assert(compose.includes("bridge-a: *bridge") && compose.includes("bridge-b: *bridge"));
  assert(compose.includes("volatile-lru") && compose.includes("BRIDGE_REDIS_URL"));
});

Deno.test("every metric the Grafana dashboard queries is one the bridge exports", async () => {
  const dashboard = JSON.parse(await read("grafana-dashboard.json"));
  const queried = new Set<string>();
  for (const panel of dashboard.panels) {
    for (const target of panel.targets) {
      for (const [name] of target.expr.matchAll(/\b(?:bridge|ollama)_[a-z_]+/g)) {
        queried.add(name.replace(/_bucket$/, ""));
      }
    }
  }
  await using dir = await tempCacheDir();
  await using t = await startTestBridge([
    "--enable-cache",
    "--cache-dir",
    dir.path,
    "--enable-shared-mode",
    "--api-key",
    "k-12345",
  ]);
  const exported = await (await fetch(`${t.url}/metrics`)).text();
  for (const name of queried) assert(exported.includes(`# TYPE ${name} `), `${name} is exported`);
});

Deno.test({
  name: "the systemd unit passes systemd-analyze verify",
  ignore: Deno.build.os !== "linux" || !(() => {
    try {
      return new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null" }).outputSync()
        .success;
    } catch {
      return false;
    }
  })(),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // The binary is not installed here: point ExecStart at one that exists, keep everything else.
      const unit = (await read("deepseek-ollama-bridge.service")).replaceAll(
        "/usr/local/bin/deepseek-ollama-bridge",
        "/bin/true",
      );
      await Deno.writeTextFile(`${dir}/deepseek-ollama-bridge.service`, unit);
      const result = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/deepseek-ollama-bridge.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const output = new TextDecoder().decode(result.stderr) + new TextDecoder().decode(result.stdout);
      assertEquals(result.code, 0, output);
      assertEquals(output.trim(), "", "no warnings");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
