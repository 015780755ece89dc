/**
 * The messages of a whole recorded stream, read with the same parsers the relay uses: the `data` of each SSE
 * event (per the SSE spec: an event counts only once its blank line arrived), or each non-empty NDJSON line.
 */
import { createParser } from "eventsource-parser";
import type { StreamFormat } from "../core/answer.ts";

const decoder = new TextDecoder();

export function streamMessages(format: StreamFormat, body: Uint8Array): string[] {
  const text = decoder.decode(body);
  if (format === "ndjson") {
    return text.split("\n").map((line) => line.endsWith("\r") ? line.slice(0, -1) : line).filter((line) =>
      line.trim() !== ""
    );
  }
  const messages: string[] = [];
  const parser = createParser({ onEvent: (event) => messages.push(event.data) });
  parser.feed(text);
  return messages;
}
