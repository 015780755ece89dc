/**
 * The endpoints the bridge understands: their request body is JSON (validated before anything is sent
 * upstream), and later steps (think filter, cache) know the shape of their answers. Every other path under
 * `/v1/` and `/api/` passes through untouched.
 */

export type EndpointKind =
  | "openai-chat"
  | "openai-completion"
  | "openai-embedding"
  | "openai-responses"
  | "ollama-chat"
  | "ollama-generate"
  | "ollama-embed"
  | "ollama-json";

const POST_ENDPOINTS: Record<string, EndpointKind> = {
  "/v1/chat/completions": "openai-chat",
  "/v1/completions": "openai-completion",
  "/v1/embeddings": "openai-embedding",
  "/v1/responses": "openai-responses",
  "/api/chat": "ollama-chat",
  "/api/generate": "ollama-generate",
  "/api/embed": "ollama-embed",
  "/api/embeddings": "ollama-embed",
  "/api/show": "ollama-json",
  "/api/pull": "ollama-json",
  "/api/push": "ollama-json",
  "/api/create": "ollama-json",
  "/api/copy": "ollama-json",
};

/** The kind of a JSON endpoint, or undefined for paths passed through untouched. */
export function endpointKind(method: string, path: string): EndpointKind | undefined {
  return method === "POST" ? POST_ENDPOINTS[path] : undefined;
}

/** Paths the bridge forwards upstream. */
export function isProxiedPath(path: string): boolean {
  return path.startsWith("/v1/") || path.startsWith("/api/") || path === "/v1" || path === "/api";
}
