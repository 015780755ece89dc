/**
 * The Lua plugin's 2^N states (`--luajit-instances-power`), each in a Web Worker. A call goes to a free state, or
 * waits in a bounded queue. A state that stops answering (past `--lua-timeout` and a grace period: the count hook
 * inside should have cut it long before) is replaced, and the call fails; the bridge keeps serving.
 */
import { BridgeError } from "../core/errors.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { schedule, type Timer } from "../core/time.ts";
import type { LuaValue } from "./lua_state.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

export interface LuaPoolOptions {
  script: string;
  packagePath?: string;
  packageCpath?: string;
  timeoutMs: number;
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
/** Extra time a worker gets beyond --lua-timeout before it is replaced. */
const GRACE_MS = 2000;

interface Call {
  name: string;
  argument: LuaValue;
  results: number;
  resolve(values: LuaValue[]): void;
  reject(error: Error): void;
}

class PluginWorker {
  readonly worker: Worker;
  #pending?: { id: number; call: Call; timer: Timer };
  #ids = 0;

  constructor(
    private readonly pool: LuaPool,
    private readonly options: LuaPoolOptions,
    ready: (error?: string) => void,
  ) {
    this.worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
    this.worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.type === "ready") ready();
      else if (message.type === "failed") ready(message.message);
      else if (message.type === "log") options.log.info("lua", { print: message.line });
      else this.#settle(message);
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      ready(event.message);
      this.#fail(new PluginFailure(`The Lua worker crashed: ${event.message}`));
    };
    const init: ToWorker = {
      type: "init",
      script: options.script,
      packagePath: options.packagePath,
      packageCpath: options.packageCpath,
      timeoutMs: options.timeoutMs,
    };
    this.worker.postMessage(init);
  }

  run(call: Call): void {
    const id = ++this.#ids;
    const timer = schedule(this.options.timeoutMs + GRACE_MS, () => {
      this.options.log.error("lua worker did not answer: replacing it", {
        timeout_ms: this.options.timeoutMs,
      });
      this.#fail(new PluginFailure("The bridge's Lua plugin timed out on this request."));
      this.pool.replace(this);
    });
    this.#pending = { id, call, timer };
    const message: ToWorker = {
      type: "call",
      id,
      name: call.name,
      argument: call.argument,
      results: call.results,
    };
    this.worker.postMessage(message);
  }

  #settle(message: Extract<FromWorker, { id: number }>): void {
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
    pending?.timer.cancel();
    pending?.call.reject(error);
  }

  terminate(): void {
    this.#fail(new PluginFailure("The bridge is stopping."));
    this.worker.terminate();
  }
}

export class LuaPool {
  #free: PluginWorker[] = [];
  #all = new Set<PluginWorker>();
  #queue: Call[] = [];

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
      const worker = this.#free.pop();
      if (worker) worker.run(call);
      else if (this.#queue.length < MAX_QUEUED) this.#queue.push(call);
      else reject(new PluginFailure("The bridge's Lua plugin is overloaded: retry shortly."));
    });
  }

  /** A worker finished its call: give it the next queued one, or mark it free. */
  idle(worker: PluginWorker): void {
    const next = this.#queue.shift();
    if (next) worker.run(next);
    else this.#free.push(worker);
  }

  /** Replaces a worker that stopped answering. */
  replace(worker: PluginWorker): void {
    this.#all.delete(worker);
    this.#free = this.#free.filter((free) => free !== worker);
    worker.terminate();
    this.#spawn().catch((error) =>
      this.options.log.error("cannot restart a Lua worker", { error: String(error) })
    );
  }

  close(): void {
    for (const worker of this.#all) worker.terminate();
    this.#all.clear();
    this.#free = [];
    for (const call of this.#queue.splice(0)) call.reject(new PluginFailure("The bridge is stopping."));
  }

  #spawn(): Promise<PluginWorker> {
    return new Promise((resolve, reject) => {
      const worker: PluginWorker = new PluginWorker(this, this.options, (error) => {
        if (error) {
          worker.worker.terminate();
          return reject(new Error(error));
        }
        this.#all.add(worker);
        this.idle(worker); // takes a queued call, or waits for the next
        resolve(worker);
      });
    });
  }
}
