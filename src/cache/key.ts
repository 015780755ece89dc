/**
 * The cache key: SHA-256 over a canonical form of everything that decides an answer — method, path, tenant and
 * the whole request body (every turn of the conversation, every sampling parameter) with object keys sorted,
 * minus the fields that do not change the answer.
 *
 * `stream` and `stream_options` stay in the key: a streamed and a whole answer are stored apart, and a stream
 * that was asked to include usage is not replayed to a client that did not ask for it (or the other way round).
 */
import type { EndpointKind } from "../proxy/endpoints.ts";
import type { ProxyRequest } from "../proxy/request.ts";

/** Body fields that never change the answer. */
const IGNORED_FIELDS = new Set(["user", "request_fingerprint"]);

/** The endpoints whose successful answers are cached. */
const CACHEABLE: ReadonlySet<EndpointKind> = new Set<EndpointKind>([
  "openai-chat",
  "openai-completion",
  "openai-embedding",
  "ollama-chat",
  "ollama-generate",
  "ollama-embed",
]);

export function isCacheable(request: ProxyRequest): boolean {
  return request.method === "POST" && request.kind !== undefined && CACHEABLE.has(request.kind) &&
    request.json !== undefined;
}

/** JSON with object keys sorted at every level, so key order never changes the key. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
}

const encoder = new TextEncoder();

/** The hex SHA-256 key of a cacheable request; `tenant` keeps tenants' answers apart. */
export async function cacheKey(request: ProxyRequest, tenant = ""): Promise<string> {
  const body = Object.fromEntries(
    Object.entries(request.json ?? {}).filter(([field]) => !IGNORED_FIELDS.has(field)),
  );
  const canonical = canonicalJson({ method: request.method, path: request.path, tenant, body });
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(canonical));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
