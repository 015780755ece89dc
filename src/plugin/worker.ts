/// <reference lib="deno.worker" />
/**
 * A plugin worker: one Lua state on its own thread, so a slow script never blocks the bridge's event loop.
 * Messages in: `init` once, then `call`s; out: `ready`/`failed`, `result`/`error` per call, `log` for print().
 */
import { LuaError, LuaState, type LuaValue } from "./lua_state.ts";

export type ToWorker =
  | { type: "init"; script: string; packagePath?: string; packageCpath?: string; timeoutMs: number }
  | { type: "call"; id: number; name: string; argument: LuaValue; results: number };

export type FromWorker =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "log"; line: string }
  | { type: "result"; id: number; values: LuaValue[] }
  | { type: "error"; id: number; message: string };

let state: LuaState | undefined;
let timeoutMs = 1000;
const send = (message: FromWorker) => self.postMessage(message);

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "init") {
    try {
      timeoutMs = message.timeoutMs;
      state = new LuaState({ ...message, print: (line) => send({ type: "log", line }) });
      send({ type: "ready" });
    } catch (error) {
      send({ type: "failed", message: (error as Error).message });
    }
    return;
  }
  try {
    if (!state) throw new LuaError("The Lua state is not ready");
    send({
      type: "result",
      id: message.id,
      values: state.call(message.name, message.argument, message.results, timeoutMs),
    });
  } catch (error) {
    send({ type: "error", id: message.id, message: (error as Error).message });
  }
};
