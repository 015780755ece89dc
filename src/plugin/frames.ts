/**
 * The messages between the bridge and its Lua processes, over their stdin/stdout: length-prefixed frames of a
 * JSON head plus the byte strings it refers to, so bodies cross as bytes (never through a UTF-8 decode).
 */
import { concatBytes } from "../core/bytes.ts";
import type { LuaValue } from "./lua_state.ts";

export type ToLua =
  | {
    type: "init";
    script: string;
    packagePath?: string;
    packageCpath?: string;
    timeoutMs: number;
    memoryLimitBytes: number;
  }
  | { type: "call"; id: number; name: string; argument: LuaValue; results: number };

export type FromLua =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "log"; line: string }
  | { type: "result"; id: number; values: LuaValue[] }
  | { type: "error"; id: number; message: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** A byte string in the JSON head: its offset and length in the bytes after the head. */
const BYTES = "\u0000bytes";

/** A frame: [u32 head length][u32 bytes length][head JSON][bytes]. */
export function encodeFrame(message: ToLua | FromLua): Uint8Array {
  const blobs: Uint8Array[] = [];
  let offset = 0;
  const head = encoder.encode(JSON.stringify(message, (_key, value) => {
    if (!(value instanceof Uint8Array)) return value;
    blobs.push(value);
    offset += value.length;
    return { [BYTES]: [offset - value.length, value.length] };
  }));
  const prefix = new Uint8Array(8);
  const view = new DataView(prefix.buffer);
  view.setUint32(0, head.length);
  view.setUint32(4, offset);
  return concatBytes([prefix, head, ...blobs]);
}

/** Collects frames from a byte stream, whatever the chunk boundaries. */
export class FrameReader {
  #buffer: Uint8Array = new Uint8Array(0);

  /** The whole frames now available, in order. */
  push<T>(chunk: Uint8Array): T[] {
    this.#buffer = this.#buffer.length ? concatBytes([this.#buffer, chunk]) : chunk;
    const frames: T[] = [];
    while (this.#buffer.length >= 8) {
      const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset);
      const headLength = view.getUint32(0);
      const bytesLength = view.getUint32(4);
      const end = 8 + headLength + bytesLength;
      if (this.#buffer.length < end) break;
      const bytes = this.#buffer.slice(8 + headLength, end);
      frames.push(JSON.parse(decoder.decode(this.#buffer.subarray(8, 8 + headLength)), (_key, value) => {
        const ref = value?.[BYTES];
        return Array.isArray(ref) ? bytes.subarray(ref[0], ref[0] + ref[1]) : value;
      }));
      this.#buffer = this.#buffer.subarray(end);
    }
    return frames;
  }
}
