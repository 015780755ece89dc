/**
 * The plugin's two hooks in the request flow. The request hook runs before the cache (so the key is computed on
 * the request the script made) and may answer at once; the response hook runs on every answer going to a client,
 * cache hits included — for a streamed answer it sees the status and headers, with `body = nil`.
 */
import type { Context, MiddlewareHandler, Next } from "hono";
import { InvalidRequest } from "../core/errors.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { endpointKind } from "../core/endpoints.ts";
import { parseJsonBody } from "../core/json_body.ts";
import type { ProxyRequest } from "../core/request.ts";
import { normalizePath } from "../core/request_path.ts";
import type { LuaValue } from "./lua_state.ts";
import { type LuaPool, PluginFailure } from "./pool.ts";

type Table = { [key: string]: LuaValue };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class PluginHooks {
  constructor(
    private readonly pool: LuaPool,
    private readonly log: Logger,
    private readonly metrics: BridgeMetrics,
  ) {}

  /** The request hook as a middleware: continues with the changed request, or answers for the script. */
  request(): MiddlewareHandler {
    return (c, next) => this.#requestHook(c, next);
  }

  async #requestHook(c: Context, next: Next): Promise<Response | void> {
    const request = c.get("proxyRequest");
    const [proceed, table] = await this.#call("request", "HandleServerRequest", requestTable(request), 2);
    if (proceed === false) return responseFrom(asTable(table));
    if (table !== null) c.set("proxyRequest", changedRequest(request, asTable(table)));
    await next();
  }

  /** Runs the response hook on an answer about to go out. */
  async response(response: Response, body: string | null): Promise<Response> {
    const [table] = await this.#call("response", "HandleServerResponse", {
      status_code: response.status,
      headers: Object.fromEntries(response.headers),
      ...(body === null ? {} : { body }),
    }, 1);
    const changed = asTable(table);
    const status = typeof changed.status_code === "number" ? changed.status_code : response.status;
    const headers = headersFrom(changed.headers, response.headers);
    // An unchanged body goes out as the original bytes, not as a round trip through a Lua string.
    if (body === null || typeof changed.body !== "string" || changed.body === body) {
      return new Response(response.body, { status, headers });
    }
    return new Response(changed.body, { status, headers });
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
    body: request.body ? decoder.decode(request.body) : "",
  };
}

/** The request as the script changed it: method, path (a `?` in it sets the query), headers, body. */
function changedRequest(request: ProxyRequest, table: Table): ProxyRequest {
  const method = typeof table.method === "string" ? table.method.toUpperCase() : request.method;
  let { path, search } = request;
  if (typeof table.path === "string") {
    const query = table.path.indexOf("?");
    path = pluginPath(query < 0 ? table.path : table.path.slice(0, query));
    if (query >= 0) search = table.path.slice(query);
  }
  const headers = table.headers && typeof table.headers === "object"
    ? headersFrom(table.headers, request.headers)
    : request.headers;
  const body = typeof table.body === "string"
    ? (table.body ? encoder.encode(table.body) : null)
    : request.body;
  const kind = endpointKind(method, path);
  return {
    ...request,
    method,
    path,
    search,
    headers,
    body,
    kind,
    ...(kind ? parseJsonBody(body) : { json: undefined, inexactNumbers: undefined }),
  };
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
  const status = typeof table.status_code === "number" ? table.status_code : 200;
  if (status < 200 || status > 599) {
    throw new InvalidRequest(`The Lua plugin answered with status ${status}.`, "plugin_error");
  }
  return new Response(typeof table.body === "string" ? table.body : "", {
    status,
    headers: headersFrom(table.headers, new Headers()),
  });
}

function headersFrom(value: LuaValue | undefined, fallback: Headers): Headers {
  if (!value || typeof value !== "object" || Array.isArray(value)) return fallback;
  const headers = new Headers();
  for (const [name, item] of Object.entries(value)) {
    if (typeof item === "string" || typeof item === "number") headers.set(name, String(item));
  }
  return headers;
}

function asTable(value: LuaValue | undefined): Table {
  if (value && typeof value === "object" && !Array.isArray(value)) return value;
  throw new PluginFailure("The bridge's Lua plugin returned something other than a table.");
}
