/**
 * Joins the upstream base URL and a client path without doubling `/v1`.
 *
 * Clients talk to the bridge as if it were the API root (`http://bridge/v1/chat/completions`, `/api/chat`).
 * The upstream base may be a bare origin (Ollama: `http://127.0.0.1:11434`, DeepSeek: `https://api.deepseek.com`)
 * or an OpenAI-compatible base that already names its version (`https://api.openai.com/v1`,
 * `https://generativelanguage.googleapis.com/v1beta/openai`):
 * - a `/v1/...` path is appended as is to a bare origin, and without its `/v1` to a base with a path;
 * - any other path (Ollama's `/api/...`) is appended to the base with a trailing `/v1` removed.
 */
export function upstreamTarget(base: URL, path: string, search: string): string {
  const basePath = base.pathname === "/" ? "" : base.pathname.replace(/\/+$/, "");
  let joined: string;
  if (path === "/v1" || path.startsWith("/v1/")) {
    joined = basePath ? basePath + path.slice(3) : path;
  } else {
    joined = basePath.replace(/\/v1$/, "") + path;
  }
  return `${base.origin}${joined}${search}`;
}
