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
  // A walk that swaps byte strings for references (a JSON.stringify replacer costs more per call).
  const swap = (value: unknown): unknown => {
    if (value instanceof Uint8Array) {
      blobs.push(value);
      offset += value.length;
      return { [BYTES]: [offset - value.length, value.length] };
    }
    if (Array.isArray(value)) return value.map(swap);
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const key in value) out[key] = swap((value as Record<string, unknown>)[key]);
      return out;
    }
    return value;
  };
  const head = encoder.encode(JSON.stringify(swap(message)));
  const prefix = new Uint8Array(8);
  const view = new DataView(prefix.buffer);
  view.setUint32(0, head.length);
  view.setUint32(4, offset);
  return concatBytes([prefix, head, ...blobs]);
}

/** Puts the byte strings a head refers to back in place. */
function restore(value: unknown, bytes: Uint8Array): unknown {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = restore(value[i], bytes);
    return value;
  }
  if (value && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const ref = record[BYTES];
    if (Array.isArray(ref)) return bytes.subarray(ref[0], ref[0] + ref[1]);
    for (const key in record) record[key] = restore(record[key], bytes);
  }
  return value;
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
      const head = JSON.parse(decoder.decode(this.#buffer.subarray(8, 8 + headLength)));
      // Restored even when no byte follows: an empty byte string is a reference too.
      frames.push(restore(head, this.#buffer.slice(8 + headLength, end)) as T);
      this.#buffer = this.#buffer.subarray(end);
    }
    return frames;
  }
}
