/**
 * The command line: every flag, its default, range and `BRIDGE_*` environment variable, parsed once into a
 * frozen `Config`. Nothing else in the program reads `Deno.args` or the environment.
 */
import { Command, CommanderError, Help, Option } from "commander";
import { ConfigExit, envName, readEnvironment, withEnvName } from "./environment.ts";
import { VERSION } from "../core/version.ts";
import type { Config } from "./settings.ts";

export { ConfigExit } from "./environment.ts";
import {
  accessKeyList,
  byteSize,
  integerIn,
  keyList,
  listenAddress,
  nameList,
  oneOf,
  pattern,
  redisPrefix,
  redisUrl,
} from "./values.ts";
import { memberList, routeList } from "./upstreams.ts";

export type * from "./settings.ts";

/**
 * Builds the option. Its environment variable is read by `readEnvironment` from the environment handed to
 * `parseConfig` (commander's own `Option.env()` would read the process's, whatever the caller passed).
 */
function flag(
  flags: string,
  description: string,
  // deno-lint-ignore no-explicit-any
  parse?: (raw: string, previous?: any) => unknown,
  fallback?: unknown,
): Option {
  const option = new Option(flags, description);
  if (parse) option.argParser(parse as (raw: string, previous: unknown) => unknown);
  if (fallback !== undefined) option.default(fallback, String(fallback) || "none");
  return option;
}

function buildProgram(): Command {
  const program = new Command("deepseek-ollama-bridge")
    .description(
      "A fast OpenAI-compatible proxy in front of Ollama or any OpenAI-compatible API.\n" +
        "Every flag can also be set by the environment variable shown; a flag on the command line wins.",
    )
    .version(VERSION, "-V, --version", "print the version and exit")
    .helpOption("-h, --help", "show this help and exit")
    .configureHelp({
      helpWidth: 118,
      // Commander shows an option's variable only when it reads it itself: add it to the description here.
      optionDescription: (option) => withEnvName(new Help().optionDescription(option), envName(option)),
    })
    .allowExcessArguments(false);
  const options = [
    flag("-d, --debug", "verbose logs: request and response headers (secrets masked) and body sizes"),
    flag("--log-format <format>", "log line format: text or json", oneOf("text", "json"), "text"),
    flag("-l, --listen <host:port>", "address to listen on", listenAddress, "127.0.0.1:3000"),
    flag(
      "-o, --ollama <url>",
      "upstream base URL: Ollama or any OpenAI-compatible API; repeat (or comma-separate) for a pool of " +
        "equivalent servers, '#N' after a URL weights it",
      memberList,
      "http://127.0.0.1:11434",
    ),
    flag(
      "--route <glob=urls>",
      "send requests whose model matches the glob to these upstreams instead, such as " +
        "'llama3*=http://10.0.0.2:11434'; repeatable, first match wins (env: ';' between routes)",
      routeList,
    ),
    flag(
      "--health-interval <ms>",
      "probe each upstream this often when there are several, 0-3600000 (0 = only those taken out)",
      integerIn(0, 3_600_000),
      10_000,
    ),
    flag(
      "-t, --timeout <ms>",
      "whole upstream request timeout, 1000-86400000",
      integerIn(1000, 86_400_000),
      300_000,
    ),
    flag(
      "--upstream-client <kind>",
      "how to call the upstream: pool (fast HTTP/1.1 keep-alive pool), fetch (Deno's fetch: honours " +
        "HTTP(S)_PROXY, speaks HTTP/2), or auto (pool unless a proxy variable is set)",
      oneOf("auto", "pool", "fetch"),
      "auto",
    ),
    flag(
      "--max-response-size <bytes>",
      "largest upstream body the bridge decodes or reads whole (compressed or filtered), 1KiB-4GiB",
      byteSize(1024, 4 * 1024 ** 3),
      "64MiB",
    ),
    flag(
      "--upstream-ca-file <path>",
      "PEM file with CA certificates to trust for https upstreams (besides the system's and DENO_CERT's)",
    ),
    flag(
      "--max-inflight <n>",
      "requests at the upstream at once (streams until they end), 0-100000 (0 = no cap)",
      integerIn(0, 100_000),
      0,
    ),
    flag(
      "--queue-size <n>",
      "requests that may wait for an upstream slot, 0-1000000",
      integerIn(0, 1_000_000),
      256,
    ),
    flag(
      "--queue-timeout <ms>",
      "longest wait for an upstream slot before a 503, 100-3600000",
      integerIn(100, 3_600_000),
      30_000,
    ),
    flag(
      "--replicas-hint <n>",
      "this bridge is one of N replicas: --rate-limit and --max-inflight are the fleet's totals, and each " +
        "replica takes its share (rounded up), 1-1000",
      integerIn(1, 1000),
      1,
    ),
    flag(
      "--redis-url <url>",
      "share answers, rate limit, flights, async jobs and key cooldowns with the other replicas through " +
        "this Redis: redis://host:port/db, rediss:// for TLS",
      redisUrl,
    ),
    flag(
      "--redis-prefix <prefix>",
      "put before every Redis key, so fleets can share one Redis",
      redisPrefix,
      "bridge:",
    ),
    flag("--redis-secret <secret>", "encrypts the client credential a shared async job keeps (AES-GCM)"),
    flag("-r, --rate-limit <n>", "upstream requests per second, 0-65535 (0 = off)", integerIn(0, 65535), 0),
    flag("-a, --retry-attempts <n>", "retries of a failed upstream request, 0-1024", integerIn(0, 1024), 0),
    flag("-i, --retry-min-interval <ms>", "first retry delay, 50-300000", integerIn(50, 300_000), 500),
    flag("-m, --retry-max-interval <ms>", "largest retry delay, 50-300000", integerIn(50, 300_000), 10_000),
    flag(
      "--max-body-size <bytes>",
      "largest request body, 1KiB-4GiB",
      byteSize(1024, 4 * 1024 ** 3),
      "32MiB",
    ),
    flag(
      "--body-read-timeout <ms>",
      "time a client may take to send its body, 1000-3600000",
      integerIn(1000, 3_600_000),
      60_000,
    ),
    flag(
      "--keepalive-interval <ms>",
      "SSE keep-alive comment after this much upstream silence, 0-3600000 (0 = off)",
      integerIn(0, 3_600_000),
      15_000,
    ),
    flag(
      "--shutdown-timeout <ms>",
      "how long a stop waits for in-flight requests, 0-86400000",
      integerIn(0, 86_400_000),
      30_000,
    ),
    flag("--enable-cache", "answer repeated requests from a memory + disk cache"),
    flag("--cache-dir <dir>", "where the disk tier (a Deno KV store) lives", undefined, "./cache"),
    flag(
      "--cache-ttl <ms>",
      "how long an answer is served from the cache, 30000-86400000",
      integerIn(30_000, 86_400_000),
      30_000,
    ),
    flag(
      "--cache-max-entries <n>",
      "disk-tier entries, oldest evicted first, 4500-1000000",
      integerIn(4500, 1_000_000),
      65535,
    ),
    flag(
      "--cache-max-bytes <bytes>",
      "disk-tier bytes, oldest evicted first, 1MiB-16TiB",
      byteSize(1024 ** 2, 16 * 1024 ** 4),
      "1GiB",
    ),
    flag(
      "--cache-hot-threshold <n>",
      "reads per minute that promote a disk entry to memory (a starting value: it adapts), 1-100000",
      integerIn(1, 100_000),
      12,
    ),
    flag("--cache-memory-entries <n>", "memory-tier entries, 16-10000000", integerIn(16, 10_000_000), 8192),
    flag(
      "--cache-memory-bytes <bytes>",
      "memory-tier size, 1MiB-64GiB",
      byteSize(1024 ** 2, 64 * 1024 ** 3),
      "256MiB",
    ),
    flag("--enable-shared-mode", "send the bridge's own API key upstream instead of the client's"),
    flag(
      "--api-key <key>",
      "upstream API key for shared mode; repeat (or comma-separate) for a pool",
      keyList,
    ),
    flag("--api-keys-file <path>", "file with upstream API keys, one per line (re-read on SIGHUP)"),
    flag(
      "--access-key <label:key[:limits]>",
      "a key clients must present (label names the tenant), with optional limits such as " +
        "team:key:rps=5,inflight=2; repeatable",
      accessKeyList,
    ),
    flag(
      "--access-keys-file <path>",
      "file with client access keys, 'label:key' or 'key' per line (re-read on SIGHUP)",
    ),
    flag("--metrics-key <key>", "require 'Authorization: Bearer <key>' on /metrics"),
    flag(
      "--admin-key <key>",
      "enable /admin/cache/purge and /admin/cache/stats for 'Authorization: Bearer <key>'",
    ),
    flag("--cache-shared-across-tenants", "let tenants share cached answers (off: each tenant has its own)"),
    flag(
      "--enable-async-request",
      "answer requests carrying request_fingerprint with 202 until their job is done",
    ),
    flag(
      "--async-result-ttl <ms>",
      "how long a finished job's answer is kept, 1000-2592000000",
      integerIn(1000, 2_592_000_000),
      3_600_000,
    ),
    flag("--async-concurrency <n>", "jobs sent upstream at once, 1-1024", integerIn(1, 1024), 16),
    flag("--enable-luajit", "run the Lua plugin's hooks on every request (the VM is fengari, Lua 5.3)"),
    flag("--luajit-instances-power <n>", "2^N Lua states, each in a worker thread, 1-8", integerIn(1, 8), 1),
    flag("--luajit-script <path>", "the plugin script", undefined, "./plugin.lua"),
    flag("--luajit-package-path <path>", "Lua module search path for require, such as ./lua/?.lua"),
    flag(
      "--luajit-package-cpath <path>",
      "accepted for compatibility: native C modules cannot load in fengari",
    ),
    flag("--lua-timeout <ms>", "longest a hook call may run, 10-60000", integerIn(10, 60_000), 1000),
    flag(
      "--lua-memory-limit <bytes>",
      "most a Lua state's process may grow during a call before it is stopped and replaced, 4MiB-4GiB",
      byteSize(4 * 1024 ** 2, 4 * 1024 ** 3),
      "64MiB",
    ),
    flag("--disable-think-filter", "pass <think> reasoning blocks through to clients"),
    flag(
      "--think-tags <names>",
      "tag names the think filter removes, comma-separated",
      nameList,
      "think,thinking",
    ),
    flag(
      "--think-mode <mode>",
      "strip: delete reasoning; field: move it to reasoning_content (OpenAI) or thinking (Ollama)",
      oneOf("strip", "field"),
      "strip",
    ),
    flag(
      "--think-implicit-open <regex>",
      "models (regex on the name, such as r1-distill) whose prompt template opens the think block, so text " +
        "before a lone </think> is reasoning; their answers are held until that tag (default: none)",
      pattern,
      "",
    ),
  ];
  for (const option of options) program.addOption(option);
  return program;
}

/** A flag's value: commander hands a default over as the text written in the help, unparsed. */
function fromDefault<T>(value: T | string, parse: (raw: string) => T): T {
  return typeof value === "string" ? parse(value) : value;
}

const bytes = (value: number | string) => fromDefault(value, byteSize(0, Infinity));

/**
 * Parses the arguments (without the program name) and the environment into a frozen Config.
 * Throws `ConfigExit` with status 0 after `--help`/`--version` and 2 after a bad value; its message is what to print.
 */
export function parseConfig(
  args: readonly string[],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Config {
  const program = buildProgram();
  let output = "";
  program.exitOverride().configureOutput({
    writeOut: (text) => output += text,
    writeErr: (text) => output += text,
  });
  try {
    program.parse([...args], { from: "user" });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    const done = error.code === "commander.helpDisplayed" || error.code === "commander.version";
    throw new ConfigExit(done ? 0 : 2, output.trimEnd() || error.message);
  }
  readEnvironment(program, env);
  const o = program.opts();
  if (o.enableSharedMode && !o.apiKey?.length && !env.BRIDGE_API_KEYS && !o.apiKeysFile) {
    throw new ConfigExit(
      2,
      "error: --enable-shared-mode needs an upstream key: --api-key, BRIDGE_API_KEYS or --api-keys-file.",
    );
  }
  const maxBodyBytes = bytes(o.maxBodySize);
  if (o.retryMinInterval > o.retryMaxInterval) {
    throw new ConfigExit(
      2,
      `error: --retry-min-interval (${o.retryMinInterval}) must not exceed --retry-max-interval (${o.retryMaxInterval}).`,
    );
  }
  return Object.freeze({
    debug: Boolean(o.debug),
    logFormat: o.logFormat,
    listen: Object.freeze(fromDefault(o.listen, listenAddress)),
    upstreams: Object.freeze({
      defaultPool: { name: "default", members: fromDefault(o.ollama, memberList) },
      routes: Object.freeze(o.route ?? []),
      healthIntervalMs: o.healthInterval,
    }),
    timeoutMs: o.timeout,
    upstreamClient: o.upstreamClient !== "auto"
      ? o.upstreamClient
      : ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"].some((name) =>
          env[name]
        )
      ? "fetch"
      : "pool",
    retry: Object.freeze({
      attempts: o.retryAttempts,
      minIntervalMs: o.retryMinInterval,
      maxIntervalMs: o.retryMaxInterval,
    }),
    // With --replicas-hint N, the limits are the fleet's: each replica takes its share, rounded up.
    rateLimit: Math.ceil(o.rateLimit / o.replicasHint),
    replicas: o.replicasHint,
    fleetRateLimit: o.rateLimit,
    redis: o.redisUrl === undefined
      ? undefined
      : Object.freeze({ url: o.redisUrl, prefix: o.redisPrefix, secret: o.redisSecret || undefined }),
    admission: Object.freeze({
      maxInflight: Math.ceil(o.maxInflight / o.replicasHint),
      queueSize: o.queueSize,
      queueTimeoutMs: o.queueTimeout,
    }),
    maxBodyBytes,
    maxResponseBytes: bytes(o.maxResponseSize),
    upstreamCaFile: o.upstreamCaFile,
    bodyReadTimeoutMs: o.bodyReadTimeout,
    keepaliveIntervalMs: o.keepaliveInterval,
    shutdownTimeoutMs: o.shutdownTimeout,
    cache: !o.enableCache ? undefined : Object.freeze({
      dir: o.cacheDir,
      ttlMs: o.cacheTtl,
      maxEntries: o.cacheMaxEntries,
      maxBytes: bytes(o.cacheMaxBytes),
      hotThreshold: o.cacheHotThreshold,
      memoryEntries: o.cacheMemoryEntries,
      sharedAcrossTenants: Boolean(o.cacheSharedAcrossTenants),
      memoryBytes: bytes(o.cacheMemoryBytes),
    }),
    shared: Object.freeze({
      enabled: Boolean(o.enableSharedMode),
      apiKeys: Object.freeze([...(o.apiKey ?? []), ...keyList(env.BRIDGE_API_KEYS ?? "")]),
      apiKeysFile: o.apiKeysFile,
      accessKeys: Object.freeze(o.accessKey ?? []),
      accessKeysFile: o.accessKeysFile,
      metricsKey: o.metricsKey,
      adminKey: o.adminKey,
      sharedAcrossTenants: Boolean(o.cacheSharedAcrossTenants),
    }),
    async: !o.enableAsyncRequest
      ? undefined
      : Object.freeze({ resultTtlMs: o.asyncResultTtl, concurrency: o.asyncConcurrency, dir: o.cacheDir }),
    lua: !o.enableLuajit ? undefined : Object.freeze({
      script: o.luajitScript,
      instances: 2 ** o.luajitInstancesPower,
      packagePath: o.luajitPackagePath,
      packageCpath: o.luajitPackageCpath,
      timeoutMs: o.luaTimeout,
      memoryLimitBytes: bytes(o.luaMemoryLimit),
    }),
    think: o.disableThinkFilter ? undefined : Object.freeze({
      tags: Object.freeze(fromDefault(o.thinkTags, nameList)),
      mode: o.thinkMode,
      implicitModels: fromDefault(o.thinkImplicitOpen, pattern),
    }),
  });
}
