/**
 * The plugin's two hooks in the request flow. The request hook runs before the cache (so the key is computed on
 * the request the script made) and may answer at once; the response hook runs on every answer going to a client,
 * cache hits included — for a streamed answer it sees the status and headers, with `body = nil`.
 */
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { endpointKind } from "../core/endpoints.ts";
import { parseJsonBody } from "../core/json_body.ts";
import type { ProxyRequest } from "../core/request.ts";
import { normalizePath } from "../core/request_path.ts";
import type { LuaValue } from "./lua_state.ts";
import { isFieldValue, isToken } from "../core/http_syntax.ts";
import { concatBytes } from "../core/bytes.ts";
import { PluginFailure } from "./pool.ts";
import type { LuaRunner } from "./runner.ts";

type Table = { [key: string]: LuaValue };

const encoder = new TextEncoder();

export class PluginHooks {
  constructor(
    private readonly pool: LuaRunner,
    private readonly log: Logger,
    private readonly metrics: BridgeMetrics,
  ) {}

  /** Runs the request hook: the request to go on with (changed or not), or the script's own answer. */
  async request(request: ProxyRequest): Promise<ProxyRequest | Response> {
    const [proceed, table] = await this.#call("request", "HandleServerRequest", requestTable(request), 2);
    if (proceed === false) return responseFrom(asTable(table));
    return table === null ? request : changedRequest(request, asTable(table));
  }

  /** Runs the response hook on an answer about to go out (the body as bytes; null for a stream). */
  async response(response: Response, body: Uint8Array | null): Promise<Response> {
    const [table] = await this.#call("response", "HandleServerResponse", {
      status_code: response.status,
      headers: Object.fromEntries(response.headers),
      ...(body === null ? {} : { body }),
    }, 1);
    const changed = asTable(table);
    const status = changed.status_code === undefined || changed.status_code === null
      ? response.status
      : checkedStatus(changed.status_code);
    const headers = headersFrom(changed.headers, response.headers);
    const changedBody = bodyOf(changed.body);
    // An unchanged body goes out as the original bytes, not as a round trip through a Lua string.
    if (body === null || changedBody === undefined || sameBytes(changedBody, body)) {
      return new Response(response.body, { status, headers });
    }
    return new Response(changedBody, { status, headers });
  }

  async #call(
    hook: "request" | "response",
    name: string,
    argument: Table,
    results: number,
  ): Promise<LuaValue[]> {
    const start = performance.now();
    try {
      const values = await this.pool.call(name, argument, results);
      this.metrics.luaCalls.inc({ hook, result: "ok" });
      return values;
    } catch (error) {
      this.metrics.luaCalls.inc({ hook, result: /timed out/.test(String(error)) ? "timeout" : "error" });
      this.log.error("lua plugin failed", { hook, error: (error as Error).message });
      throw error instanceof PluginFailure ? error : new PluginFailure();
    } finally {
      this.metrics.luaDuration.observe({ hook }, (performance.now() - start) / 1000);
    }
  }
}

function requestTable(request: ProxyRequest): Table {
  return {
    path: request.path,
    method: request.method,
    headers: Object.fromEntries(request.headers),
    body: request.body ?? "",
  };
}

/** The request as the script changed it: method, path (a `?` in it sets the query), headers, body. */
function changedRequest(request: ProxyRequest, table: Table): ProxyRequest {
  const method = typeof table.method === "string"
    ? checkedMethod(table.method.toUpperCase())
    : request.method;
  let { path, search } = request;
  if (typeof table.path === "string") {
    const query = table.path.indexOf("?");
    path = pluginPath(query < 0 ? table.path : table.path.slice(0, query));
    if (query >= 0) search = table.path.slice(query);
  }
  const headers = table.headers && typeof table.headers === "object"
    ? headersFrom(table.headers, request.headers)
    : request.headers;
  const changedBody = bodyOf(table.body);
  // The body the script handed back unchanged keeps its bytes and its parse (the common identity case).
  const unchanged = changedBody === undefined ||
    (request.body ? sameBytes(changedBody, request.body) : changedBody.length === 0);
  const body = unchanged ? request.body : changedBody!.length ? changedBody! : null;
  const kind = endpointKind(method, path);
  const parsed = unchanged && kind === request.kind
    ? { json: request.json, inexactNumbers: request.inexactNumbers }
    : kind
    ? parseJsonBody(body)
    : { json: undefined, inexactNumbers: undefined };
  return { ...request, method, path, search, headers, body, kind, ...parsed };
}

/** A path the script set, held to the same rules as a client's; a bad one is the script's failure (500). */
function pluginPath(path: string): string {
  try {
    return normalizePath(path);
  } catch (error) {
    throw new PluginFailure(`The bridge's Lua plugin set an invalid path: ${(error as Error).message}`);
  }
}

function responseFrom(table: Table): Response {
  const status = table.status_code === undefined || table.status_code === null
    ? 200
    : checkedStatus(table.status_code);
  return new Response(bodyOf(table.body) ?? "", {
    status,
    headers: headersFrom(table.headers, new Headers()),
  });
}

/**
 * Values from Lua are checked before use: a method that is not a token, a header name or value that could split
 * a message (CR, LF, NUL), a status outside 200-599, a body that is neither a string nor nil are the script's
 * failure (500), never written anywhere.
 */
function invalid(what: string): PluginFailure {
  return new PluginFailure(`The bridge's Lua plugin returned an invalid ${what}.`);
}

function checkedMethod(method: string): string {
  if (!isToken(method)) throw invalid(`method ${JSON.stringify(method.slice(0, 40))}`);
  return method;
}

function checkedStatus(value: LuaValue): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 200 || value > 599) {
    throw invalid(`status_code ${JSON.stringify(value)} (a whole number from 200 to 599)`);
  }
  return value;
}

/** A body from Lua as bytes (a text string as its UTF-8, a byte string as is); undefined for nil. */
function bodyOf(value: LuaValue | undefined): Uint8Array<ArrayBuffer> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return concatBytes([value]);
  throw invalid("body (a string or nil)");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function headersFrom(value: LuaValue | undefined, fallback: Headers): Headers {
  if (!value || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) {
    return fallback;
  }
  const headers = new Headers();
  for (const [name, item] of Object.entries(value)) {
    if (item === null) continue;
    const text = item instanceof Uint8Array ? String.fromCharCode(...item) : String(item);
    if (!isToken(name)) throw invalid(`header name ${JSON.stringify(name.slice(0, 40))}`);
    if (!isFieldValue(text)) throw invalid(`value for header '${name}' (CR, LF or NUL in it)`);
    headers.set(name, text);
  }
  return headers;
}

function asTable(value: LuaValue | undefined): Table {
  if (value && typeof value === "object" && !Array.isArray(value) && !(value instanceof Uint8Array)) {
    return value;
  }
  throw new PluginFailure("The bridge's Lua plugin returned something other than a table.");
}
