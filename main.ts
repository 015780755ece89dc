/**
 * DeepSeek-Ollama Bridge: parses the command line, starts the proxy, and drains it on SIGTERM/SIGINT
 * (Ctrl-Break on Windows). A second signal, more than a second after the first, exits at once.
 */
import { type Config, ConfigExit, parseConfig } from "./src/config/index.ts";
import { runLuaChild } from "./src/plugin/child.ts";
import { createLogger } from "./src/observe/log.ts";
import { startBridge } from "./src/server/serve.ts";
import { PRODUCT, VERSION } from "./src/core/version.ts";

function readConfig(): Config {
  try {
    return parseConfig(Deno.args);
  } catch (error) {
    if (!(error instanceof ConfigExit)) throw error;
    (error.exitCode === 0 ? console.log : console.error)(error.message);
    Deno.exit(error.exitCode);
  }
}

// The compiled binary is also its own Lua plugin process (src/plugin/pool.ts starts it with this flag).
if (Deno.args[0] === "--lua-child") {
  runLuaChild();
  Deno.exit(0);
}

const config = readConfig();
const log = createLogger({ format: config.logFormat, debug: config.debug });
let running;
try {
  running = await startBridge(config, { log });
} catch (error) {
  log.error(`cannot start: ${error instanceof Error ? error.message : String(error)}`, {
    listen: `${config.listen.hostname}:${config.listen.port}`,
  });
  log.flush();
  Deno.exit(1);
}
log.info(`${PRODUCT} ${VERSION} listening on ${running.url}`, {
  upstream: config.upstreams.defaultPool.members.map((member) => member.url.href).join(", "),
  routes: config.upstreams.routes.map((route) => route.models).join(", ") || "none",
  rate_limit: config.rateLimit || "off",
  retries: config.retry.attempts,
});

const { shared, listen } = config;
if (
  [config.upstreams.defaultPool, ...config.upstreams.routes].some((pool) =>
    pool.members.some((m) => m.basicAuth)
  )
) {
  log.info(
    "the --ollama URL's user:password goes upstream as Basic auth when no other credential applies " +
      (shared.enabled ? "(the --api-key wins)" : "(a client's own Authorization, x-api-key or api-key wins)"),
  );
}
const loopback = /^(127\.|localhost$|::1$)/.test(listen.hostname);
if (shared.enabled && !shared.accessKeys.length && !shared.accessKeysFile && !loopback) {
  log.warn(
    "shared mode on a non-loopback address without access keys: anyone who can reach " +
      `${listen.hostname}:${listen.port} spends your upstream key. Add --access-key or --access-keys-file.`,
  );
}

const bridge = running;
if (Deno.build.os !== "windows") {
  Deno.addSignalListener("SIGHUP", () => {
    bridge.bridge.reloadKeys().catch((error) =>
      log.error("key reload failed; keeping the old keys", { error: String(error) })
    );
  });
}
/**
 * The first stop signal drains. A repeat within REPEAT_WINDOW_MS is the same request: `deno task`, systemd's
 * control-group kill and a terminal's Ctrl-C deliver one signal to both the task runner and the bridge, so it
 * arrives twice at once. A later repeat means "now": the process exits at once.
 */
const REPEAT_WINDOW_MS = 1000;
let signalledAt: number | undefined;
function onSignal(signal: Deno.Signal): void {
  if (signalledAt !== undefined) {
    if (performance.now() - signalledAt < REPEAT_WINDOW_MS) return;
    log.warn(`${signal} again: exiting now`);
    log.flush();
    Deno.exit(1);
  }
  signalledAt = performance.now();
  log.info(`${signal}: draining`, { shutdown_timeout_ms: config.shutdownTimeoutMs });
  bridge.stop().then(() => {
    log.info("stopped");
    log.flush();
    Deno.exit(0);
  });
}
const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
for (const signal of signals) Deno.addSignalListener(signal, () => onSignal(signal));
