/**
 * The think filter for OpenAI's Responses API (`/v1/responses`): the answer's text is in `output_text` parts of
 * `message` output items; a stream carries it as `response.output_text.delta` events (filtered as they come, one
 * filter per output item and content part), then repeats it whole in the `.done`, `content_part.done`,
 * `output_item.done` and `response.completed` events (each filtered whole: the same result as the deltas).
 * Reasoning the upstream reports in items of its own is left alone.
 */
import { parseObject } from "../core/json.ts";
import type { ChunkMapper } from "../stream/chunk_mapper.ts";
import { sseChunkMapper, type SseEvent } from "../stream/sse.ts";
import { filterThink, ThinkFilter, type ThinkFilterOptions } from "./think.ts";

type Json = Record<string, unknown>;

export interface ResponsesFilter {
  body(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer>;
  stream(): ChunkMapper;
  readonly blocksRemoved: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function responsesFilter(options: ThinkFilterOptions): ResponsesFilter {
  const deltas = new Map<string, ThinkFilter>();
  let wholeBlocks = 0;
  let counting = true;

  /** Filters a whole text; counts its blocks only where no delta filter counted them already. */
  const whole = (text: string): string => {
    const result = filterThink(text, options);
    if (counting) wholeBlocks += result.blocks;
    return result.content;
  };

  const filterParts = (parts: unknown): void => {
    if (!Array.isArray(parts)) return;
    for (const part of parts as Json[]) {
      if (part?.type === "output_text" && typeof part.text === "string") part.text = whole(part.text);
    }
  };

  const filterOutput = (output: unknown): void => {
    if (!Array.isArray(output)) return;
    for (const item of output as Json[]) if (item?.type === "message") filterParts(item.content);
  };

  const filterResponse = (response: Json): void => {
    filterOutput(response.output);
    if (typeof response.output_text === "string") response.output_text = whole(response.output_text);
  };

  const keyOf = (data: Json) => `${data.output_index ?? 0}:${data.content_index ?? 0}`;

  return {
    get blocksRemoved() {
      let blocks = wholeBlocks;
      for (const filter of deltas.values()) blocks += filter.blocksRemoved;
      return blocks;
    },

    body(bytes) {
      const answer = parseObject(decoder.decode(bytes));
      if (!answer) return bytes;
      filterResponse(answer);
      return encoder.encode(JSON.stringify(answer));
    },

    stream() {
      // The whole-text events repeat what the deltas carried: their blocks are counted once, by the deltas.
      counting = false;
      return sseChunkMapper({
        event(event) {
          const data = parseObject(event.data);
          if (!data) return [event];
          const out: SseEvent[] = [];
          switch (data.type) {
            case "response.output_text.delta": {
              let filter = deltas.get(keyOf(data));
              if (!filter) deltas.set(keyOf(data), filter = new ThinkFilter(options));
              data.delta = filter.push(String(data.delta ?? "")).content;
              break;
            }
            case "response.output_text.done": {
              // What the delta filter still held (a partial tag that was not one) goes out as a last delta.
              const rest = deltas.get(keyOf(data))?.end().content;
              if (rest) {
                out.push(
                  asEvent({ ...data, type: "response.output_text.delta", delta: rest, text: undefined }),
                );
              }
              if (typeof data.text === "string") data.text = whole(data.text);
              break;
            }
            case "response.content_part.done":
              filterParts([data.part]);
              break;
            case "response.output_item.done":
              if ((data.item as Json)?.type === "message") filterParts((data.item as Json).content);
              break;
            case "response.completed":
            case "response.incomplete":
              if (data.response && typeof data.response === "object") filterResponse(data.response as Json);
              break;
            default:
              return [event];
          }
          out.push({ ...event, data: JSON.stringify(data) });
          return out;
        },
      });
    },
  };
}

function asEvent(data: Json): SseEvent {
  return { event: String(data.type), data: JSON.stringify(data) };
}
