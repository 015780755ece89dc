/**
 * Rewrites a server-sent-event stream event by event: parses it per the SSE spec (CR, LF or CRLF line ends,
 * multi-line data, comments; chunk boundaries anywhere) with eventsource-parser, and re-encodes what the mapper
 * returns. Comments pass through; an event mapped to null is dropped.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";

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

export function mapSse(mapper: SseMapper): TransformStream<Uint8Array, Uint8Array> {
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
  return new TransformStream({
    transform(chunk, controller) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      if (output) {
        controller.enqueue(encoder.encode(output));
        output = "";
      }
    },
    flush(controller) {
      parser.feed(decoder.decode());
      for (const mapped of mapper.end?.() ?? []) output += encodeSse(mapped);
      if (output) controller.enqueue(encoder.encode(output));
    },
  });
}
