/**
 * A minimal llama.cpp chat server for the affinity benchmark, run by Node (node-llama-cpp is a Node addon):
 * `node bench/lib/llama_server.mjs <node-llama-cpp entry> <model.gguf> <port> [slots]`.
 *
 * Like llama.cpp's own server, it keeps one KV cache per slot and gives a prompt the slot whose cached tokens
 * share the longest prefix with it if that is at least half the prompt (else the least recently used slot), then
 * evaluates only the tokens after the shared prefix. `POST /v1/chat/completions` answers with llama.cpp's `timings` (`prompt_n` tokens evaluated,
 * `prompt_ms`, `cache_n` tokens reused) and the server's port in `system_fingerprint`. Requests run one at a time.
 */
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";

const [entry, modelPath, portText, slotsText = "2"] = process.argv.slice(2);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const slotCount = Number(slotsText);
const context = await model.createContext({ contextSize: 4096, sequences: slotCount, threads: 1 });
const slots = Array.from({ length: slotCount }, () => ({ sequence: context.getSequence(), usedAt: 0 }));

const SIMILARITY = 0.5;

function commonPrefix(a, b) {
  let length = 0;
  while (length < a.length && length < b.length && a[length] === b[length]) length++;
  return length;
}

async function complete(messages) {
  const prompt = messages.map((message) => `${message.role}: ${message.content}\n`).join("") + "assistant:";
  const tokens = model.tokenize(prompt);
  let best = slots[0];
  let bestShared = -1;
  for (const slot of slots) {
    const shared = commonPrefix(slot.sequence.contextTokens, tokens);
    if (shared > bestShared) {
      best = slot;
      bestShared = shared;
    }
  }
  // As llama.cpp's --slot-prompt-similarity (0.5): a slot sharing less than half the prompt is not worth
  // evicting; the least recently used slot takes the prompt instead.
  if (bestShared < tokens.length * SIMILARITY) {
    best = slots.reduce((oldest, slot) => slot.usedAt < oldest.usedAt ? slot : oldest);
    bestShared = commonPrefix(best.sequence.contextTokens, tokens);
  }
  // Evaluate at least the prompt's last token, as llama.cpp does for a prompt it has seen whole.
  const reused = Math.min(bestShared, tokens.length - 1);
  const { sequence } = best;
  if (reused < sequence.nextTokenIndex) {
    await sequence.eraseContextTokenRanges([{ start: reused, end: sequence.nextTokenIndex }]);
  }
  const started = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(reused));
  const promptMs = performance.now() - started;
  best.usedAt = performance.now();
  return { prompt_n: tokens.length - reused, prompt_ms: promptMs, cache_n: reused };
}

let queue = Promise.resolve();
const server = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => body += chunk);
  request.on("end", () => {
    const reply = (status, json) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(json));
    };
    if (request.method === "GET") {
      return reply(200, { object: "list", data: [{ id: "tiny", object: "model" }] });
    }
    if (request.url !== "/v1/chat/completions") return reply(404, { error: { message: "not found" } });
    queue = queue.then(async () => {
      try {
        const timings = await complete(JSON.parse(body).messages);
        reply(200, {
          id: `chatcmpl-${Date.now()}`,
          object: "chat.completion",
          model: "tiny",
          system_fingerprint: portText,
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage: { prompt_tokens: timings.prompt_n + timings.cache_n, completion_tokens: 0 },
          timings,
        });
      } catch (error) {
        reply(500, { error: { message: String(error) } });
      }
    });
  });
});
server.listen(Number(portText), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
