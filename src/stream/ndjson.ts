/**
 * Rewrites a newline-delimited JSON stream line by line, whatever the chunk boundaries. Lines are handed over
 * without their line end; the mapper returns the lines to send (none drops the line).
 */
import { asTransformStream, type ChunkMapper } from "./chunk_mapper.ts";

export interface LineMapper {
  line(text: string): string[];
  /** Lines to send when the stream ends without error. */
  end?(): string[];
}

/** The NDJSON rewrite as a pure chunk mapper. */
export function ndjsonChunkMapper(mapper: LineMapper): ChunkMapper {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let partial = "";
  const map = (lines: string[]) => lines.map((line) => line + "\n").join("");
  return {
    feed(chunk) {
      const text = partial + decoder.decode(chunk, { stream: true });
      const lastBreak = text.lastIndexOf("\n");
      partial = text.slice(lastBreak + 1);
      if (lastBreak < 0) return undefined;
      let output = "";
      for (const line of text.slice(0, lastBreak).split("\n")) {
        const trimmed = line.endsWith("\r") ? line.slice(0, -1) : line;
        if (trimmed) output += map(mapper.line(trimmed));
      }
      return output ? encoder.encode(output) : undefined;
    },
    end() {
      const rest = (partial + decoder.decode()).trim();
      const output = (rest ? map(mapper.line(rest)) : "") + map(mapper.end?.() ?? []);
      return output ? encoder.encode(output) : undefined;
    },
  };
}

export function mapNdjson(mapper: LineMapper): TransformStream<Uint8Array, Uint8Array> {
  return asTransformStream(ndjsonChunkMapper(mapper));
}
