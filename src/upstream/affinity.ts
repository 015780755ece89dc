/**
 * A conversation's affinity key. Ollama and llama.cpp keep the KV cache of a slot's last prompt, so sending a
 * conversation's next turn to the server that had its previous turn saves re-reading the prefix. The key is the
 * model plus the messages up to and including the first user message: the turns of one conversation share it,
 * while conversations that share only a system prompt do not.
 */
import { createHash } from "node:crypto";
import type { ProxyRequest } from "../core/request.ts";

/** The key of a chat request's conversation; undefined for requests without messages (generate, completions). */
export function conversationKey(request: ProxyRequest): string | undefined {
  const json = request.json;
  if (!json || !Array.isArray(json.messages) || !json.messages.length) return undefined;
  const messages: unknown[] = json.messages;
  const firstUser = messages.findIndex((message) => (message as { role?: unknown } | null)?.role === "user");
  const opening = firstUser < 0 ? messages : messages.slice(0, firstUser + 1);
  // `system` is Anthropic's system prompt, outside the messages.
  const material = JSON.stringify([json.model ?? null, json.system ?? null, opening]);
  return createHash("sha256").update(material).digest("base64");
}
