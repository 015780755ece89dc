/**
 * Rewrites a newline-delimited JSON stream line by line, whatever the chunk boundaries. Lines are handed over
 * without their line end; the mapper returns the lines to send (none drops the line).
 */

export interface LineMapper {
  line(text: string): string[];
  /** Lines to send when the stream ends without error. */
  end?(): string[];
}

export function mapNdjson(mapper: LineMapper): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let partial = "";
  const map = (lines: string[]) => lines.map((line) => line + "\n").join("");
  return new TransformStream({
    transform(chunk, controller) {
      const text = partial + decoder.decode(chunk, { stream: true });
      const lastBreak = text.lastIndexOf("\n");
      partial = text.slice(lastBreak + 1);
      if (lastBreak < 0) return;
      let output = "";
      for (const line of text.slice(0, lastBreak).split("\n")) {
        const trimmed = line.endsWith("\r") ? line.slice(0, -1) : line;
        if (trimmed) output += map(mapper.line(trimmed));
      }
      if (output) controller.enqueue(encoder.encode(output));
    },
    flush(controller) {
      const rest = (partial + decoder.decode()).trim();
      const output = (rest ? map(mapper.line(rest)) : "") + map(mapper.end?.() ?? []);
      if (output) controller.enqueue(encoder.encode(output));
    },
  });
}
