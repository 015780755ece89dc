/** The route globs: whole-name wildcard matching, any case, in time linear enough for hostile model names. */
import { globMatcher, LONGEST_ROUTED_MODEL } from "../src/config/upstreams.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("route globs: * and ? over the whole name, ignoring case; regex characters are literal", () => {
  const cases: [string, string, boolean][] = [
    ["llama3*", "llama3.1:70b", true],
    ["llama3*", "LLAMA3", true],
    ["llama3*", "codellama3", false],
    ["*:70b", "qwen2.5:70b", true],
    ["*:70b", "qwen2.5:70b-q4", false],
    ["qwen?", "qwen2", true],
    ["qwen?", "qwen", false],
    ["qwen2.5", "qwen2x5", false],
    ["a*b*c", "a-b-c", true],
    ["a*b*c", "a-c-b", false],
    ["*", "", true],
    ["[x]+(y)", "[x]+(y)", true],
  ];
  for (const [glob, model, expected] of cases) {
    assertEquals(globMatcher(glob)(model), expected, `${glob} ${model}`);
  }
});

Deno.test("a hostile model name cannot make a glob backtrack without bound; over-long names match no route", () => {
  const matches = globMatcher("a*a*a*a*a*a*b");
  const started = performance.now();
  assertEquals(matches("a".repeat(LONGEST_ROUTED_MODEL)), false);
  assertEquals(matches("a".repeat(10_000_000)), false);
  // A regular expression takes minutes on this; the walk takes well under a second even on a slow machine.
  assert(performance.now() - started < 5000);
  assertEquals(globMatcher("*")("m".repeat(LONGEST_ROUTED_MODEL + 1)), false);
});
