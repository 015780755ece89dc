import { upstreamTarget } from "../src/upstream/target.ts";
import { assertEquals } from "./assert.ts";

const cases: [string, string, string][] = [
  ["http://127.0.0.1:11434", "/v1/chat/completions", "http://127.0.0.1:11434/v1/chat/completions"],
  ["http://127.0.0.1:11434", "/api/chat", "http://127.0.0.1:11434/api/chat"],
  ["https://api.deepseek.com", "/v1/chat/completions", "https://api.deepseek.com/v1/chat/completions"],
  ["https://api.deepseek.com/v1", "/v1/chat/completions", "https://api.deepseek.com/v1/chat/completions"],
  ["https://api.openai.com/v1/", "/v1/models", "https://api.openai.com/v1/models"],
  [
    "https://generativelanguage.googleapis.com/v1beta/openai",
    "/v1/chat/completions",
    "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
  ],
  ["http://ollama:11434/v1", "/api/tags", "http://ollama:11434/api/tags"],
  ["http://gateway/llm", "/api/tags", "http://gateway/llm/api/tags"],
  ["http://gateway/llm", "/v1", "http://gateway/llm"],
];

Deno.test("upstream URL joining never doubles /v1", () => {
  for (const [base, path, expected] of cases) {
    assertEquals(upstreamTarget(new URL(base), path, ""), expected, `${base} + ${path}`);
  }
  assertEquals(upstreamTarget(new URL("http://h"), "/v1/models", "?a=1"), "http://h/v1/models?a=1");
});
