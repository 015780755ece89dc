/**
 * `deno task demo`: the bridge in front of a fake model server, for a first look without Ollama.
 * Starts both on loopback, prints curl lines to copy, and runs until Ctrl-C.
 */
import { parseConfig } from "../src/config/index.ts";
import { createLogger } from "../src/observe/log.ts";
import { startBridge } from "../src/server/serve.ts";
import { FakeUpstream } from "../tests/fake_upstream.ts";

const upstream = new FakeUpstream({
  // Answers like a reasoning model: the think filter removes the block (try --disable-think-filter).
  reply: "<think>\nThe user says hi. A short, friendly answer will do.\n</think>\n\n" +
    "Hello! I am a fake model behind DeepSeek-Ollama Bridge. Every token you see streamed through the proxy.",
  chunkDelayMs: 60,
  chunkSize: 6,
});

function listenAddress(): string {
  // Prefer the bridge's usual port; fall back to a free one if something already uses it.
  try {
    Deno.listen({ hostname: "127.0.0.1", port: 3000 }).close();
    return "127.0.0.1:3000";
  } catch {
    return "127.0.0.1:0";
  }
}

const config = parseConfig(["--listen", listenAddress(), "--ollama", upstream.url, ...Deno.args]);
const running = await startBridge(config, {
  log: createLogger({ format: config.logFormat, debug: config.debug }),
});
const url = running.url;

console.log(`
DeepSeek-Ollama Bridge demo
  bridge:        ${url}
  fake upstream: ${upstream.url}  (speaks OpenAI and Ollama; no model needed)

Try, in another terminal:

  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"demo","messages":[{"role":"user","content":"Hi"}]}'

  curl -N ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

  curl -N ${url}/api/chat -d '{"model":"demo","messages":[{"role":"user","content":"Hi"}]}'

  curl -s ${url}/v1/chat/completions -d '{not json'        # a 400 in OpenAI's error shape
  curl -s ${url}/health; curl -s ${url}/metrics | head

The fake model thinks out loud in <think> tags; the bridge removes them. To see them:
  deno task demo --disable-think-filter        or        deno task demo --think-mode field

Ctrl-C stops both.
`);

Deno.addSignalListener("SIGINT", async () => {
  await running.stop();
  await upstream.close();
  Deno.exit(0);
});
