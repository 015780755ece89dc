/**
 * A Lua process: one Lua state, driven over stdin/stdout (frames.ts). The bridge runs one per plugin instance,
 * as its own executable with `--lua-child` (so it works the same compiled and under `deno run`), and kills and
 * replaces it when a call overruns `--lua-timeout` or its memory passes `--lua-memory-limit` (a watchdog thread
 * here reports that: child_watchdog.ts): the only sure stop for a script that loops inside a built-in, swallows
 * its errors or clears its hooks.
 */
import { encodeFrame, FrameReader, type FromLua, type ToLua } from "./frames.ts";
import { LuaError, LuaState } from "./lua_state.ts";

export function runLuaChild(): void {
  // Plain reads and synchronous writes on the pipes: no stream machinery on a path taken twice per request.
  // Frames are small and the bridge reads them at once, so a write never waits long.
  const send = (message: FromLua) => {
    const frame = encodeFrame(message);
    for (let written = 0; written < frame.length;) written += Deno.stdout.writeSync(frame.subarray(written));
  };
  const frames = new FrameReader();
  const buffer = new Uint8Array(256 * 1024);
  let state: LuaState | undefined;
  let timeoutMs = 1000;
  for (;;) {
    // A blocking read: this process does nothing else, and it spares each call a trip through the event loop.
    // (The memory watchdog runs on a thread of its own.)
    const n = Deno.stdin.readSync(buffer);
    // The bridge is gone (or closed the pool): exit, even though the watchdog's worker would keep the process up.
    if (n === null) Deno.exit(0);
    for (const message of frames.push<ToLua>(buffer.slice(0, n))) {
      if (message.type === "init") {
        try {
          timeoutMs = message.timeoutMs;
          const watchdog = new Worker(new URL("./child_watchdog.ts", import.meta.url).href, {
            type: "module",
          });
          watchdog.postMessage({ limitBytes: message.memoryLimitBytes });
          state = new LuaState({ ...message, print: (line) => send({ type: "log", line }) });
          send({ type: "ready" });
        } catch (error) {
          send({ type: "failed", message: (error as Error).message });
        }
        continue;
      }
      try {
        if (!state) throw new LuaError("The Lua state is not ready");
        const values = state.call(message.name, message.argument, message.results, timeoutMs);
        send({ type: "result", id: message.id, values });
      } catch (error) {
        send({ type: "error", id: message.id, message: (error as Error).message });
      }
    }
  }
}

if (import.meta.main) runLuaChild();
