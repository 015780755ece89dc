/**
 * Applies the think filter to every answer shape the bridge understands: OpenAI chat and completions (JSON and
 * SSE, a filter per choice index) and Ollama chat and generate (JSON and NDJSON). In `field` mode the reasoning
 * is moved to `reasoning_content` (OpenAI, as DeepSeek's API does) or `thinking` (Ollama) instead of dropped.
 */
import { asObject, parseObject } from "../core/json.ts";
import { indexOfBytes } from "../core/bytes.ts";
import type { ThinkSettings } from "../config/index.ts";
import type { EndpointKind } from "../core/endpoints.ts";
import type { ChunkMapper } from "../stream/chunk_mapper.ts";
import { ndjsonChunkMapper } from "../stream/ndjson.ts";
import type { StreamFormat } from "../stream/format.ts";
import { sseChunkMapper, type SseEvent } from "../stream/sse.ts";
import { ThinkFilter, type ThinkOutput } from "./think.ts";
import { responsesFilter } from "./think_responses.ts";

/** The think filter of one answer. */
export interface AnswerFilter {
  /** Whether filtering these whole-answer bytes could change them (a tag name occurs in them). */
  mayChange(bytes: Uint8Array): boolean;
  /** Filters a whole JSON answer; returns the same bytes when there is nothing to filter. */
  body(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer>;
  /** Filters a streamed answer, chunk by chunk. */
  stream(format: StreamFormat): ChunkMapper;
  /** Blocks removed so far. */
  readonly blocksRemoved: number;
}

type Json = Record<string, unknown>;

/** Where an answer shape keeps its text: the object holding it, and the field names. */
interface Dialect {
  /** The objects holding text in one answer or chunk, with their choice index. */
  holders(answer: Json, streamed: boolean): { index: number; holder: Json; done: boolean }[];
  text: string;
  reasoning: string;
  /** Keys of a text holder that make a stream chunk worth sending even when its text became empty. */
  meaningful: readonly string[];
  /** A chunk or line carrying only `content` for choice `index`, shaped like `last`. */
  synthesize(last: Json, index: number, content: string, reasoning: string, streamed: boolean): Json;
}

const openai = (text: "content" | "text"): Dialect => ({
  holders(answer, streamed) {
    const choices: unknown[] = Array.isArray(answer.choices) ? answer.choices : [];
    // A choice (or its message) that is not an object is none the filter reads: it goes on as it came.
    return choices.flatMap((item) => {
      const choice = asObject(item);
      if (!choice) return [];
      const holder = text === "text" ? choice : asObject(choice[streamed ? "delta" : "message"]) ?? {};
      return [{ index: Number(choice.index ?? 0), holder, done: choice.finish_reason != null }];
    });
  },
  text,
  reasoning: "reasoning_content",
  meaningful: ["role", "tool_calls", "function_call", "refusal", "logprobs"],
  synthesize(last, index, content, reasoning, streamed) {
    const body: Json = { [text]: content };
    if (reasoning) body.reasoning_content = reasoning;
    const choice = text === "text" ? { index, ...body, finish_reason: null } : {
      index,
      [streamed ? "delta" : "message"]: body,
      finish_reason: null,
    };
    return { ...last, choices: [choice], usage: undefined };
  },
});

const ollama = (text: "message" | "response"): Dialect => ({
  holders(answer) {
    const holder = text === "message" ? asObject(answer.message) ?? {} : answer;
    return [{ index: 0, holder, done: answer.done === true }];
  },
  text: text === "message" ? "content" : "response",
  reasoning: "thinking",
  // Every Ollama line has a role, so a role alone does not make a line worth sending.
  meaningful: ["tool_calls", "images"],
  synthesize(last, _index, content, reasoning) {
    const field = text === "message" ? "content" : "response";
    const body: Json = { [field]: content };
    if (reasoning) body.thinking = reasoning;
    const base = { model: last.model, created_at: last.created_at, done: false };
    return text === "message" ? { ...base, message: { role: "assistant", ...body } } : { ...base, ...body };
  },
});

const DIALECTS: Partial<Record<EndpointKind, Dialect>> = {
  "openai-chat": openai("content"),
  "openai-completion": openai("text"),
  "ollama-chat": ollama("message"),
  "ollama-generate": ollama("response"),
};

/**
 * Whether the request asks for JSON output: OpenAI's `response_format` `json_object` / `json_schema` (what the
 * AI SDK's generateObject sends), Ollama's `format: "json"` or a schema object. Then only a think block that
 * opens the answer is removed: text inside the JSON is content, byte for byte.
 */
export function jsonMode(request: Readonly<Json> | undefined): boolean {
  const responseFormat = request?.response_format as Json | undefined;
  if (responseFormat && typeof responseFormat === "object") {
    return responseFormat.type === "json_object" || responseFormat.type === "json_schema";
  }
  const format = request?.format;
  return format === "json" || (typeof format === "object" && format !== null);
}

/**
 * Whether a body holds one of the think tags, searched as bytes without decoding: most answers have no tag at
 * all, and are then sent without building a filter. A cached answer is replayed from the same bytes each time,
 * so the verdict is kept beside them (weakly: it goes when they go), and a hit does not search again.
 */
export function mayHoldThinkTag(bytes: Uint8Array, settings: ThinkSettings): boolean {
  const { patterns, verdicts } = tagScanOf(settings);
  let verdict = verdicts.get(bytes);
  if (verdict === undefined) {
    verdict = patterns.some((pattern) => indexOfBytes(bytes, pattern) >= 0);
    verdicts.set(bytes, verdict);
  }
  return verdict;
}

/** The think filter for an answer to this request, or undefined where it does not apply. */
export function answerFilter(
  kind: EndpointKind | undefined,
  request: Readonly<Json> | undefined,
  settings: ThinkSettings,
): AnswerFilter | undefined {
  const model = request?.model;
  const implicitOpen = typeof model === "string" && settings.implicitModels?.test(model) === true;
  const openingOnly = jsonMode(request);
  const mayChange = (bytes: Uint8Array) => mayHoldThinkTag(bytes, settings);
  if (kind === "openai-responses") {
    const responses = responsesFilter({ tags: settings.tags, implicitOpen, openingOnly });
    return {
      get blocksRemoved() {
        return responses.blocksRemoved;
      },
      mayChange,
      body: (bytes) => mayChange(bytes) ? responses.body(bytes) : bytes,
      stream: (format) =>
        format === "sse" ? responses.stream() : { feed: (chunk) => chunk, end: () => undefined },
    };
  }
  const dialect = kind ? DIALECTS[kind] : undefined;
  if (!dialect) return undefined;
  const filters = new Map<number, ThinkFilter>();
  const ended = new Set<number>();
  const filterOf = (index: number) => {
    let filter = filters.get(index);
    if (!filter) {
      filters.set(index, filter = new ThinkFilter({ tags: settings.tags, implicitOpen, openingOnly }));
    }
    return filter;
  };
  const keepReasoning = settings.mode === "field";
  let last: Json = {};

  /** Filters the text of every holder in one answer or chunk; returns whether anything worth sending is left. */
  function apply(answer: Json, streamed: boolean): boolean {
    let worthSending = false;
    for (const { index, holder, done } of dialect!.holders(answer, streamed)) {
      const filter = filterOf(index);
      let out: ThinkOutput = { content: "", reasoning: "" };
      // The upstream reports reasoning apart (Ollama's OpenAI API calls it `reasoning`): its text is all answer.
      if (holder[dialect!.reasoning] || holder.reasoning) out = join(out, filter.decideNoImplicitBlock());
      const text = holder[dialect!.text];
      if (typeof text === "string") out = join(out, filter.push(text));
      if (done || !streamed) {
        out = join(out, filter.end());
        ended.add(index);
      }
      if (typeof text === "string" || out.content) holder[dialect!.text] = out.content;
      if (keepReasoning && out.reasoning) {
        holder[dialect!.reasoning] = String(holder[dialect!.reasoning] ?? "") + out.reasoning;
      }
      worthSending ||= done || out.content !== "" || Boolean(holder[dialect!.reasoning]) ||
        dialect!.meaningful.some((key) => holder[key] != null);
    }
    return worthSending;
  }

  /** What filters still hold at the end of a stream, as extra chunks. */
  function flush(streamed: boolean): Json[] {
    const extra: Json[] = [];
    for (const [index, filter] of filters) {
      if (ended.has(index)) continue;
      ended.add(index);
      const out = filter.end();
      if (out.content || (keepReasoning && out.reasoning)) {
        extra.push(
          dialect!.synthesize(last, index, out.content, keepReasoning ? out.reasoning : "", streamed),
        );
      }
    }
    return extra;
  }

  return {
    get blocksRemoved() {
      let blocks = 0;
      for (const filter of filters.values()) blocks += filter.blocksRemoved;
      return blocks;
    },

    mayChange,

    body(bytes) {
      if (!mayChange(bytes)) return bytes;
      const answer = parseObject(decoder.decode(bytes));
      if (!answer) return bytes;
      apply(answer, false);
      return encoder.encode(JSON.stringify(answer));
    },

    stream(format) {
      if (format === "sse") {
        return sseChunkMapper({
          event(event) {
            if (event.data === "[DONE]") return [...flush(true).map(asEvent), event];
            const chunk = parseObject(event.data);
            if (!chunk) return [event];
            last = chunk;
            return apply(chunk, true) || Array.isArray(chunk.choices) && chunk.choices.length === 0 ||
                chunk.usage
              ? [{ ...event, data: JSON.stringify(chunk) }]
              : [];
          },
          end: () => flush(true).map(asEvent),
        });
      }
      return ndjsonChunkMapper({
        line(text) {
          const line = parseObject(text);
          if (!line) return [text];
          last = line;
          return apply(line, true) ? [JSON.stringify(line)] : [];
        },
        end: () => flush(true).map((line) => JSON.stringify(line)),
      });
    },
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const scans = new WeakMap<ThinkSettings, TagScan>();

interface TagScan {
  /** Tag names as bytes: every tag contains its name, whether JSON escapes its `<` as \u003c or not. */
  readonly patterns: Uint8Array[];
  /** What mayHoldThinkTag found in the bodies it searched. */
  readonly verdicts: WeakMap<Uint8Array, boolean>;
}

/** What searching bodies for the tags of `settings` needs, made once per settings. */
function tagScanOf(settings: ThinkSettings): TagScan {
  let scan = scans.get(settings);
  if (!scan) {
    scan = { patterns: settings.tags.map((tag) => encoder.encode(tag)), verdicts: new WeakMap() };
    scans.set(settings, scan);
  }
  return scan;
}

function asEvent(chunk: Json): SseEvent {
  return { data: JSON.stringify(chunk) };
}

function join(a: ThinkOutput, b: ThinkOutput): ThinkOutput {
  return { content: a.content + b.content, reasoning: a.reasoning + b.reasoning };
}
