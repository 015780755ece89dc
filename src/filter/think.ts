/**
 * The think-tag filter: a streaming state machine that takes the text deltas of one answer and splits them into
 * what the user should see and the model's reasoning, so `<think>…</think>` blocks (DeepSeek-R1 and its
 * distills, QwQ, Qwen3) never reach a client that did not ask for them.
 *
 * Rules (docs/think-filter.md has examples):
 * - `<name>…</name>` blocks for each configured tag name are reasoning, however many there are;
 * - whitespace a removed block leaves at the start of the answer is dropped;
 * - once the visible answer has started, tags inside markdown code (``` fences or `inline`) are literal text;
 * - a block still open at the end is reasoning (the model was cut off while thinking);
 * - with `implicitOpen` (models whose template opens the block for them), text before a first `</name>` with no
 *   `<name>` before it is reasoning; it is held until that tag or the end decides it;
 * - otherwise at most one partial tag's worth of text is held back between deltas.
 */

export interface ThinkFilterOptions {
  /** Tag names without brackets. @default ["think", "thinking"] */
  tags?: readonly string[];
  /** The answer may start inside a block opened by the prompt template (R1-distill). @default false */
  implicitOpen?: boolean;
  /**
   * JSON mode: only a block that opens the answer (before its first non-space character) is removed; from that
   * character on, the text is the answer byte for byte, tags and all (a JSON string may hold `<think>`).
   * @default false
   */
  openingOnly?: boolean;
}

/** What one step of the filter lets through. */
export interface ThinkOutput {
  content: string;
  reasoning: string;
}

type Mode = "text" | "block" | "implicit";

export class ThinkFilter {
  readonly #opens: string[];
  readonly #closes: string[];
  readonly #longest: number;
  #mode: Mode;
  /** The close tag that ends the current block. */
  #close = "";
  /** Text carried to the next push: a partial tag, or (implicit mode) everything so far. */
  #held = "";
  /** Whitespace at the very start of the answer, kept until we know whether a block precedes the answer. */
  #leading = "";
  #visible = false;
  #fence = false;
  #inline = false;
  /** Backticks seen in a row, resolved at the next other character. */
  #ticks = 0;
  /** Implicit mode: how much of the held text has been searched for tags already. */
  #searched = 0;
  readonly #openingOnly: boolean;
  blocksRemoved = 0;

  constructor(options: ThinkFilterOptions = {}) {
    const tags = options.tags?.length ? options.tags : ["think", "thinking"];
    this.#opens = tags.map((tag) => `<${tag}>`);
    this.#closes = tags.map((tag) => `</${tag}>`);
    this.#longest = Math.max(...this.#closes.map((tag) => tag.length));
    this.#mode = options.implicitOpen ? "implicit" : "text";
    this.#openingOnly = options.openingOnly ?? false;
  }

  /** Whether text is being held until a tag or the end decides it (implicit mode, undecided). */
  get undecided(): boolean {
    return this.#mode === "implicit";
  }

  /** Filters the next delta of the answer. */
  push(delta: string): ThinkOutput {
    const out: ThinkOutput = { content: "", reasoning: "" };
    this.#run(this.#held + delta, out);
    return out;
  }

  /** Ends the answer: releases what was held back. */
  end(): ThinkOutput {
    const out: ThinkOutput = { content: "", reasoning: "" };
    const rest = this.#held;
    this.#held = "";
    if (this.#mode === "block") out.reasoning += rest;
    else if (this.#mode === "implicit") this.#visibleText(rest, out); // no `</think>` came: it was the answer
    else this.#visibleText(rest, out);
    if (!this.#visible && this.blocksRemoved === 0) out.content += this.#leading;
    this.#leading = "";
    return out;
  }

  /**
   * Gives up the implicit-open assumption (the upstream reports reasoning in a field of its own, so the text is
   * all answer) and releases what was held as content.
   */
  decideNoImplicitBlock(): ThinkOutput {
    const out: ThinkOutput = { content: "", reasoning: "" };
    if (this.#mode !== "implicit") return out;
    this.#mode = "text";
    const held = this.#held;
    this.#held = "";
    this.#run(held, out);
    return out;
  }

  #run(text: string, out: ThinkOutput): void {
    this.#held = "";
    let i = 0;
    while (i < text.length) {
      if (this.#mode === "block") {
        const close = text.indexOf(this.#close, i);
        if (close < 0) {
          const keep = partialSuffix(text, i, [this.#close]);
          out.reasoning += text.slice(i, text.length - keep);
          this.#held = text.slice(text.length - keep);
          return;
        }
        out.reasoning += text.slice(i, close);
        i = close + this.#close.length;
        this.#mode = "text";
        this.blocksRemoved++;
        continue;
      }
      if (this.#mode === "implicit") {
        // Held text was searched before; only a tag straddling its end can be new there.
        const from = Math.max(i, this.#searched - this.#longest + 1);
        this.#searched = 0;
        const close = firstOf(text, from, this.#closes);
        const open = firstOf(text, from, this.#opens);
        if (close && (!open || close.at < open.at)) {
          out.reasoning += text.slice(i, close.at);
          i = close.at + close.tag.length;
          this.#mode = "text";
          this.blocksRemoved++;
          continue;
        }
        if (open) {
          // An explicit block came first: the template did not open one, and what preceded it is answer.
          this.#mode = "text";
          continue;
        }
        this.#held = text.slice(i);
        this.#searched = this.#held.length;
        return;
      }
      if (this.#openingOnly && this.#visible) {
        out.content += text.slice(i);
        return;
      }
      i = this.#scanText(text, i, out);
    }
  }

  /** Scans answer text from `i` to the next tag (entering its block) or the end; returns where it stopped. */
  #scanText(text: string, i: number, out: ThinkOutput): number {
    // Whether the visible answer has started, counting the text scanned but not yet passed on.
    let started = this.#visible;
    for (let j = i; j < text.length; j++) {
      const char = text.charCodeAt(j);
      if (char === 96 /* ` */) {
        this.#ticks++;
        started = true;
        continue;
      }
      if (this.#ticks > 0) this.#resolveTicks();
      if (char === 10 /* \n */) this.#inline = false;
      if (char !== 60 /* < */) {
        if (char > 32) started = true;
        if (started && this.#openingOnly) break; // the answer began: the rest is text as it is
        continue;
      }
      if (started && (this.#fence || this.#inline)) continue;
      const open = this.#opens.findIndex((tag) => text.startsWith(tag, j));
      if (open >= 0) {
        this.#visibleText(text.slice(i, j), out);
        this.#mode = "block";
        this.#close = this.#closes[open];
        return j + this.#opens[open].length;
      }
      const close = this.#closes.find((tag) => text.startsWith(tag, j));
      if (close && !(this.#openingOnly && started)) {
        // A stray closing tag: drop the tag itself; what came before has been shown already.
        this.#visibleText(text.slice(i, j), out);
        return j + close.length;
      }
      if (text.length - j < this.#longest && couldStartTag(text, j, this.#opens, this.#closes)) {
        this.#visibleText(text.slice(i, j), out);
        this.#held = text.slice(j);
        return text.length;
      }
      if (this.#openingOnly) break; // a `<` that opens no block begins the answer
    }
    this.#visibleText(text.slice(i), out);
    return text.length;
  }

  #resolveTicks(): void {
    if (this.#ticks >= 3) this.#fence = !this.#fence;
    else if (!this.#fence) this.#inline = !this.#inline;
    this.#ticks = 0;
  }

  #visibleText(text: string, out: ThinkOutput): void {
    if (!text) return;
    if (!this.#visible) {
      const start = text.search(/\S/);
      if (start < 0) {
        this.#leading += text;
        return;
      }
      this.#visible = true;
      // Whitespace before the answer is dropped when a block preceded it (the block left it); else kept.
      if (this.blocksRemoved === 0) out.content += this.#leading + text.slice(0, start);
      this.#leading = "";
      text = text.slice(start);
    }
    out.content += text;
  }
}

/** The length of the longest suffix of `text` (from `from`) that is a proper prefix of one of `tags`. */
function partialSuffix(text: string, from: number, tags: readonly string[]): number {
  let best = 0;
  for (const tag of tags) {
    for (let length = Math.min(tag.length - 1, text.length - from); length > best; length--) {
      if (text.endsWith(tag.slice(0, length))) {
        best = length;
        break;
      }
    }
  }
  return best;
}

function couldStartTag(
  text: string,
  at: number,
  opens: readonly string[],
  closes: readonly string[],
): boolean {
  const rest = text.slice(at);
  return opens.some((tag) => tag.startsWith(rest)) || closes.some((tag) => tag.startsWith(rest));
}

function firstOf(
  text: string,
  from: number,
  tags: readonly string[],
): { at: number; tag: string } | undefined {
  let first: { at: number; tag: string } | undefined;
  for (const tag of tags) {
    const at = text.indexOf(tag, from);
    if (at >= 0 && (!first || at < first.at)) first = { at, tag };
  }
  return first;
}

/** Filters a whole answer at once: the same result as pushing it in any pieces and ending. */
export function filterThink(
  text: string,
  options: ThinkFilterOptions = {},
): ThinkOutput & { blocks: number } {
  const filter = new ThinkFilter(options);
  const first = filter.push(text);
  const last = filter.end();
  return {
    content: first.content + last.content,
    reasoning: first.reasoning + last.reasoning,
    blocks: filter.blocksRemoved,
  };
}
