/**
 * The Lua plugin's 2^N states (`--luajit-instances-power`), each in a process of its own (child.ts). A call goes
 * to a free state, or waits in a bounded queue.
 *
 * Why processes: a script can loop inside a built-in (`string.find` with a pathological pattern, a huge
 * `string.rep`), clear its count hook, or swallow the timeout error with `pcall` — and a Web Worker cannot be
 * stopped (Worker.terminate() leaves a busy one running). A process can: at `--lua-timeout` it gets SIGKILL and
 * a fresh one takes its place (the pool never shrinks); the same when its memory grows past
 * `--lua-memory-limit` over what it used at start (its own watchdog thread reports that on stderr). The call
 * fails with a 500; the bridge keeps serving. Under `deno run` the process also gets only the permissions it needs: reading
 * the script's folder and the package path, and the few variables fengari reads.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { BridgeError } from "../core/errors.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { schedule, type Timer } from "../core/time.ts";
import { encodeFrame, FrameReader, type FromLua, type ToLua } from "./frames.ts";
import type { LuaValue } from "./lua_state.ts";

export interface LuaPoolOptions {
  script: string;
  packagePath?: string;
  packageCpath?: string;
  timeoutMs: number;
  /** The most a state's process may grow while it runs a call, in bytes. */
  memoryLimitBytes: number;
  instances: number;
  log: Logger;
  metrics: BridgeMetrics;
}

/** A plugin failure as the client sees it; the details are in the log. */
export class PluginFailure extends BridgeError {
  constructor(message = "The bridge's Lua plugin failed on this request: the bridge's log has the details.") {
    super(500, "server_error", "plugin_error", message);
  }
}

const MAX_QUEUED = 1024;
/** The variables fengari reads at start. */
const FENGARI_ENV = [
  "FENGARICONF",
  "TMPDIR",
  "TMP",
  "TEMP",
  "LUA_PATH",
  "LUA_PATH_5_3",
  "LUA_CPATH",
  "LUA_CPATH_5_3",
  "LUA_INIT",
  "LUA_INIT_5_3",
  "LUA_JSPATH",
  "LUA_JSPATH_5_3",
];

interface Call {
  name: string;
  argument: LuaValue;
  results: number;
  resolve(values: LuaValue[]): void;
  reject(error: Error): void;
}

/** The command that starts a Lua process: this executable with `--lua-child`, or child.ts under `deno run`. */
function childCommand(options: LuaPoolOptions): { command: string; args: string[] } {
  if (Deno.build.standalone) return { command: Deno.execPath(), args: ["--lua-child"] };
  const folders = [
    dirname(resolve(options.script)),
    ...(options.packagePath ?? "").split(";")
      .filter((pattern) => pattern.includes("?")).map((pattern) => dirname(resolve(pattern))),
  ];
  // The heap limit is a backstop above the watchdog's (which also sees byte strings, kept outside the heap).
  const heapMiB = 2 * Math.ceil(options.memoryLimitBytes / 2 ** 20) + 32;
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      // The script's folders, and the watchdog's module (a worker's module is read with the worker's rights).
      `--allow-read=${
        [...new Set(folders), fromFileUrl(new URL("./child_watchdog.ts", import.meta.url))].join(",")
      }`,
      `--allow-env=${FENGARI_ENV.join(",")}`,
      `--v8-flags=--max-old-space-size=${heapMiB}`,
      fromFileUrl(new URL("./child.ts", import.meta.url)),
    ],
  };
}

class LuaProcess {
  readonly #process: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #pending?: { id: number; call: Call; timer: Timer };
  #ids = 0;
  #dead = false;
  readonly #startedAt = performance.now();

  constructor(
    private readonly pool: LuaPool,
    private readonly options: LuaPoolOptions,
    ready: (error?: string) => void,
  ) {
    const { command, args } = childCommand(options);
    this.#process = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#writer = this.#process.stdin.getWriter();
    let stderr = "";
    const decoder = new TextDecoder();
    this.#process.stderr.pipeTo(
      new WritableStream({
        write: (chunk) => {
          stderr = (stderr + decoder.decode(chunk)).slice(-2000);
          const exceeded = /lua-memory-exceeded (\d+)/.exec(stderr);
          if (!exceeded || this.#dead) return;
          options.log.error("lua plugin call went over --lua-memory-limit: stopping its process", {
            grown_bytes: Number(exceeded[1]),
            limit_bytes: options.memoryLimitBytes,
          });
          this.#fail(new PluginFailure("The bridge's Lua plugin used too much memory on this request."));
          this.kill();
        },
      }),
    )
      .catch(() => {});
    const frames = new FrameReader();
    let started = false;
    const stdout = this.#process.stdout;
    (async () => {
      // A reader's loop: a little less machinery per call than the stream's async iterator.
      const reader = stdout.getReader();
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        for (const message of frames.push<FromLua>(read.value)) {
          if (message.type === "ready") {
            started = true;
            ready();
          } else if (message.type === "failed") ready(message.message);
          else if (message.type === "log") options.log.info("lua", { print: message.line });
          else this.#settle(message);
        }
      }
    })().catch(() => {});
    this.#process.status.then((status) => {
      this.#dead = true;
      if (!started) return ready(stderr.trim() || `the Lua process exited with status ${status.code}`);
      this.#fail(new PluginFailure("The bridge's Lua plugin stopped on this request."));
      this.pool.replace(
        this,
        `exited with status ${status.code}${status.signal ? ` (${status.signal})` : ""}`,
        performance.now() - this.#startedAt,
      );
    });
    this.#send({
      type: "init",
      script: options.script,
      packagePath: options.packagePath,
      packageCpath: options.packageCpath,
      timeoutMs: options.timeoutMs,
      memoryLimitBytes: options.memoryLimitBytes,
    });
  }

  run(call: Call): void {
    const id = ++this.#ids;
    const timer = schedule(this.options.timeoutMs, () => {
      this.options.log.error("lua plugin call timed out: stopping its process and starting a fresh one", {
        timeout_ms: this.options.timeoutMs,
      });
      this.#fail(new PluginFailure("The bridge's Lua plugin timed out on this request."));
      this.kill();
    });
    this.#pending = { id, call, timer };
    this.#send({ type: "call", id, name: call.name, argument: call.argument, results: call.results });
  }

  /** SIGKILL: the process stops at once, whatever its script is doing; the pool replaces it. */
  kill(): void {
    if (this.#dead) return;
    this.#dead = true;
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  #send(message: ToLua): void {
    this.#writer.write(encodeFrame(message)).catch(() => this.kill());
  }

  #settle(message: Extract<FromLua, { id: number }>): void {
    const pending = this.#pending;
    if (!pending || pending.id !== message.id) return;
    this.#pending = undefined;
    pending.timer.cancel();
    if (message.type === "result") pending.call.resolve(message.values);
    else pending.call.reject(new Error(message.message));
    this.pool.idle(this);
  }

  #fail(error: Error): void {
    const pending = this.#pending;
    this.#pending = undefined;
    if (!pending) return;
    pending.timer.cancel();
    pending.call.reject(error);
  }

  stop(): void {
    this.#fail(new PluginFailure("The bridge is stopping."));
    this.kill();
  }
}

export class LuaPool {
  #free: LuaProcess[] = [];
  #all = new Set<LuaProcess>();
  #queue: Call[] = [];
  #closed = false;
  #restartDelayMs = 0;

  private constructor(private readonly options: LuaPoolOptions) {}

  /** Starts the states; rejects with the script's problem (missing file, syntax error, missing function). */
  static async start(options: LuaPoolOptions): Promise<LuaPool> {
    const pool = new LuaPool(options);
    try {
      await Promise.all(Array.from({ length: options.instances }, () => pool.#spawn()));
    } catch (error) {
      pool.close();
      throw error;
    }
    return pool;
  }

  /** Calls a plugin function on a free state; resolves with its `results` return values. */
  call(name: string, argument: LuaValue, results: number): Promise<LuaValue[]> {
    return new Promise((resolve, reject) => {
      const call = { name, argument, results, resolve, reject };
      const state = this.#free.pop();
      if (state) state.run(call);
      else if (this.#queue.length < MAX_QUEUED) this.#queue.push(call);
      else reject(new PluginFailure("The bridge's Lua plugin is overloaded: retry shortly."));
    });
  }

  /** A state finished its call: give it the next queued one, or mark it free. */
  idle(state: LuaProcess): void {
    const next = this.#queue.shift();
    if (next) state.run(next);
    else this.#free.push(state);
  }

  /**
   * Replaces a state whose process ended (killed at a limit, or crashed). A process that keeps dying young is
   * restarted ever more slowly (up to every 5 s), never in a tight loop.
   */
  replace(state: LuaProcess, why: string, livedMs: number): void {
    if (!this.#all.delete(state) || this.#closed) return;
    this.#free = this.#free.filter((free) => free !== state);
    this.#restartDelayMs = livedMs < 2000 ? Math.min(5000, Math.max(100, this.#restartDelayMs * 2)) : 0;
    this.options.log.warn("lua process replaced", { why, restart_in_ms: this.#restartDelayMs });
    setTimeout(() => {
      if (this.#closed) return;
      this.#spawn().catch((error) =>
        this.options.log.error("cannot restart a Lua process", { error: String(error) })
      );
    }, this.#restartDelayMs);
  }

  close(): void {
    this.#closed = true;
    for (const state of this.#all) state.stop();
    this.#all.clear();
    this.#free = [];
    for (const call of this.#queue.splice(0)) call.reject(new PluginFailure("The bridge is stopping."));
  }

  #spawn(): Promise<LuaProcess> {
    return new Promise((resolve, reject) => {
      const state: LuaProcess = new LuaProcess(this, this.options, (error) => {
        if (error || this.#closed) {
          state.kill();
          return reject(new Error(error ?? "the Lua pool closed while this process started"));
        }
        this.#all.add(state);
        this.idle(state); // takes a queued call, or waits for the next
        resolve(state);
      });
    });
  }
}
