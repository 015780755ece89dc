/**
 * A Lua process: one Lua state, driven over stdin/stdout (frames.ts). The bridge runs one per plugin instance,
 * as its own executable with `--lua-child` (so it works the same compiled and under `deno run`), and kills and
 * replaces it when a call overruns `--lua-timeout` or its memory passes `--lua-memory-limit` (a watchdog thread
 * here reports that: child_watchdog.ts): the only sure stop for a script that loops inside a built-in, swallows
 * its errors or clears its hooks.
 */
import { encodeFrame, FrameReader, type FromLua, type ToLua } from "./frames.ts";
import { LuaError, LuaState } from "./lua_state.ts";

export async function runLuaChild(): Promise<void> {
  const writer = Deno.stdout.writable.getWriter();
  // One write at a time, in order: a log line never interleaves with a result.
  let writing = Promise.resolve();
  const send = (message: FromLua) => {
    const frame = encodeFrame(message);
    writing = writing.then(() => writer.write(frame));
    return writing;
  };
  const frames = new FrameReader();
  let state: LuaState | undefined;
  let timeoutMs = 1000;
  for await (const chunk of Deno.stdin.readable) {
    for (const message of frames.push<ToLua>(chunk)) {
      if (message.type === "init") {
        try {
          timeoutMs = message.timeoutMs;
          const watchdog = new Worker(new URL("./child_watchdog.ts", import.meta.url).href, {
            type: "module",
          });
          watchdog.postMessage({ limitBytes: message.memoryLimitBytes });
          state = new LuaState({ ...message, print: (line) => void send({ type: "log", line }) });
          await send({ type: "ready" });
        } catch (error) {
          await send({ type: "failed", message: (error as Error).message });
        }
        continue;
      }
      try {
        if (!state) throw new LuaError("The Lua state is not ready");
        const values = state.call(message.name, message.argument, message.results, timeoutMs);
        await send({ type: "result", id: message.id, values });
      } catch (error) {
        await send({ type: "error", id: message.id, message: (error as Error).message });
      }
    }
  }
}

if (import.meta.main) await runLuaChild();
