/**
 * Where the plugin's hooks run. A bounded script (bounded_script.ts: no loops, no calls but linear built-ins)
 * runs on a Lua state in the bridge's own process: a hook call is then a few tens of µs. Any other script runs
 * in 2^N sandboxed Lua processes (pool.ts), killed and replaced at `--lua-timeout` or `--lua-memory-limit`. Both
 * states have the same sandbox; the log says which was chosen, and why.
 */
import { boundedScript } from "./bounded_script.ts";
import { LuaError, LuaState, type LuaValue } from "./lua_state.ts";
import { LuaPool, type LuaPoolOptions } from "./pool.ts";

export interface LuaRunner {
  /** Calls a plugin function; resolves with its `results` return values, rejects with the script's error. */
  call(name: string, argument: LuaValue, results: number): Promise<LuaValue[]>;
  close(): void;
}

export async function startLua(options: LuaPoolOptions): Promise<LuaRunner> {
  let source: string | undefined;
  try {
    source = await Deno.readTextFile(options.script);
  } catch {
    // The pool reports a script it cannot read, as it always has.
  }
  const verdict = source === undefined ? undefined : boundedScript(source);
  if (verdict?.bounded) {
    const runner = new InProcessLua(options);
    options.log.info(
      "lua plugin is bounded (no loops, no calls but built-ins): it runs in the bridge's process",
    );
    return runner;
  }
  if (verdict) {
    options.log.info("lua plugin runs in sandboxed processes", {
      instances: options.instances,
      why: verdict.reason,
    });
  }
  return await LuaPool.start(options);
}

/** A bounded script's state, in this process: calls run one after another, each to its end. */
class InProcessLua implements LuaRunner {
  readonly #state: LuaState;

  constructor(private readonly options: LuaPoolOptions) {
    this.#state = new LuaState({
      script: options.script,
      packagePath: options.packagePath,
      packageCpath: options.packageCpath,
      print: (line) => options.log.info("lua", { print: line }),
    });
  }

  call(name: string, argument: LuaValue, results: number): Promise<LuaValue[]> {
    try {
      return Promise.resolve(this.#state.call(name, argument, results, this.options.timeoutMs));
    } catch (error) {
      return Promise.reject(error instanceof LuaError ? error : new LuaError(String(error)));
    }
  }

  close(): void {}
}
