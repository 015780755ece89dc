/**
 * Rewrites a server-sent-event stream event by event: parses it per the SSE spec (CR, LF or CRLF line ends,
 * multi-line data, comments; chunk boundaries anywhere) with eventsource-parser, and re-encodes what the mapper
 * returns. Comments pass through; an event mapped to null is dropped.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { asTransformStream, type ChunkMapper } from "./chunk_mapper.ts";

export type SseEvent = Pick<EventSourceMessage, "data" | "event" | "id">;

export interface SseMapper {
  /** The events to send in place of this one (none drops it). */
  event(event: SseEvent): SseEvent[];
  /** Events to send when the stream ends without error. */
  end?(): SseEvent[];
}

export function encodeSse(event: SseEvent): string {
  let text = "";
  if (event.event) text += `event: ${event.event}\n`;
  if (event.id !== undefined) text += `id: ${event.id}\n`;
  for (const line of event.data.split("\n")) text += `data: ${line}\n`;
  return text + "\n";
}

/** The SSE rewrite as a pure chunk mapper. */
export function sseChunkMapper(mapper: SseMapper): ChunkMapper {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let output = "";
  const parser = createParser({
    onEvent(event) {
      for (const mapped of mapper.event(event)) output += encodeSse(mapped);
    },
    onComment(comment) {
      output += `: ${comment}\n\n`; // the parser drops the space after the colon
    },
  });
  const take = () => {
    if (!output) return undefined;
    const bytes = encoder.encode(output);
    output = "";
    return bytes;
  };
  return {
    feed(chunk) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      return take();
    },
    end() {
      parser.feed(decoder.decode());
      for (const mapped of mapper.end?.() ?? []) output += encodeSse(mapped);
      return take();
    },
  };
}

export function mapSse(mapper: SseMapper): TransformStream<Uint8Array, Uint8Array> {
  return asTransformStream(sseChunkMapper(mapper));
}
