import { filterThink, ThinkFilter, type ThinkFilterOptions } from "../src/filter/think.ts";
import { assertEquals } from "./assert.ts";

function streamed(pieces: string[], options: ThinkFilterOptions = {}) {
  const filter = new ThinkFilter(options);
  let content = "";
  let reasoning = "";
  for (const piece of [...pieces.map((p) => filter.push(p)), filter.end()]) {
    content += piece.content;
    reasoning += piece.reasoning;
  }
  return { content, reasoning, blocks: filter.blocksRemoved };
}

/** A small seeded generator, so a failure can be reproduced. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0; // mulberry32
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  "Hello",
  " world",
  "\n",
  "  ",
  "é",
  "日本語",
  "🎉",
  "<",
  ">",
  "a<b",
  "</",
  "< think>",
  "<thin",
  "x",
  ".",
  "`",
  "\n\n",
];

function answer(next: () => number, tags: string[]): string {
  const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join("");
  let text = next() < 0.3 ? "\n " : "";
  const blocks = Math.floor(next() * 4);
  for (let b = 0; b < blocks; b++) {
    const tag = pick(tags);
    text += `<${tag}>${words(Math.floor(next() * 6))}</${tag}>${words(Math.floor(next() * 4))}`;
  }
  return text + words(Math.floor(next() * 8));
}

Deno.test("property: any split of an answer filters exactly like the whole answer", () => {
  const next = random(42);
  for (const options of [{}, { tags: ["think", "thinking", "reasoning"] }, { implicitOpen: true }]) {
    const tags = options.tags ?? ["think", "thinking"];
    for (let n = 0; n < 300; n++) {
      const text = (options.implicitOpen && next() < 0.5 ? "reasoning first </think>" : "") +
        answer(next, tags);
      const whole = filterThink(text, options);
      assertEquals(streamed([...text], options), whole, `1-char chunks of ${JSON.stringify(text)}`);
      for (let cut = 1; cut < text.length; cut++) {
        assertEquals(
          streamed([text.slice(0, cut), text.slice(cut)], options),
          whole,
          `split at ${cut} of ${JSON.stringify(text)}`,
        );
      }
    }
  }
});

Deno.test("blocks are removed, and the whitespace they leave at the start", () => {
  assertEquals(filterThink("<think>\nLet me see.\n</think>\n\nThe answer is 4."), {
    content: "The answer is 4.",
    reasoning: "\nLet me see.\n",
    blocks: 1,
  });
  assertEquals(filterThink("<think>a</think><thinking>b</thinking>Answer").content, "Answer");
  assertEquals(filterThink("Start <think>mid</think> end").content, "Start  end");
  assertEquals(filterThink("  plain answer with no block").content, "  plain answer with no block");
});

Deno.test("a tag split across chunks: '<thi' then 'nk>'", () => {
  assertEquals(streamed(["Hi <thi", "nk>secret</thi", "nk> there"]).content, "Hi  there");
  assertEquals(streamed(["<", "think>x</think>y"]).content, "y");
});

Deno.test("a lone '<' and near-misses stay as they are", () => {
  for (
    const text of [
      "a < b",
      "<",
      "x <",
      "< think>not a tag</ think>",
      "<thinker>",
      "<Think>caps are text</Think>",
      "1<2",
    ]
  ) {
    assertEquals(filterThink(text).content, text);
    assertEquals(streamed([...text]).content, text);
  }
});

Deno.test("once the answer started, a <think> inside markdown code is text", () => {
  const text = "Use the tag like this:\n```html\n<think>plan</think>\n```\nor inline `<think>` works too.";
  assertEquals(filterThink(text).content, text);
  assertEquals(streamed([...text]).content, text);
  // Outside code, a later block is still reasoning.
  assertEquals(filterThink("Answer. <think>afterthought</think>Done.").content, "Answer. Done.");
});

Deno.test("an unclosed block at the end is reasoning", () => {
  assertEquals(filterThink("<think>cut off while thinking"), {
    content: "",
    reasoning: "cut off while thinking",
    blocks: 0,
  });
  assertEquals(filterThink("Answer <think>never closed").content, "Answer ");
});

Deno.test("R1-distill: with implicitOpen, text before a lone </think> is reasoning", () => {
  const options = { implicitOpen: true };
  assertEquals(filterThink("Okay, the user wants 2+2.\n</think>\n\n4", options), {
    content: "4",
    reasoning: "Okay, the user wants 2+2.\n",
    blocks: 1,
  });
  // No tag at all: it was the answer after all.
  assertEquals(filterThink("Just an answer.", options).content, "Just an answer.");
  // An explicit block first: the template did not open one.
  assertEquals(filterThink("<think>x</think>Answer", options).content, "Answer");
  // Without implicitOpen, only the stray tag goes.
  assertEquals(filterThink("Okay.</think>4").content, "Okay.4");
});

Deno.test("implicit mode can be given up when the upstream reports reasoning separately", () => {
  const filter = new ThinkFilter({ implicitOpen: true });
  assertEquals(filter.push("The answer"), { content: "", reasoning: "" });
  assertEquals(filter.decideNoImplicitBlock(), { content: "The answer", reasoning: "" });
  assertEquals(filter.push(" is 4."), { content: " is 4.", reasoning: "" });
});
