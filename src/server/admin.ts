/**
 * The operator's endpoints, off unless `--admin-key` is set (then only for `Authorization: Bearer <key>`):
 * - `POST /admin/cache/purge` with `{}` (everything), `{"model": "…"}` or `{"key": "<cache key>"}`: removes those
 *   answers from memory and disk, for instance after a model update;
 * - `GET /admin/cache/stats`: entries, bytes, hit ratios per tier, the promotion threshold.
 */
import type { Hono } from "hono";
import type { CacheService } from "../cache/service.ts";
import type { PurgeFilter } from "../cache/disk.ts";
import { BridgeError, InvalidRequest, NotFound } from "../core/errors.ts";
import { parseJsonBody } from "../core/json_body.ts";
import { AccessKeys, presentedKey } from "../upstream/keys.ts";
import { InvalidApiKey } from "./authenticate.ts";

export function adminRoutes(app: Hono, adminKey: string | undefined, cache: CacheService | undefined): void {
  if (!adminKey) return; // never open by default: without a key the paths do not exist (404)
  const admin = new AccessKeys([{ label: "admin", key: adminKey }]);
  const guard = (headers: Headers) => {
    if (!admin.identify(presentedKey(headers))) throw new InvalidApiKey();
    if (!cache) {
      throw new BridgeError(409, "invalid_request_error", "cache_off", "The cache is off (--enable-cache).");
    }
    return cache;
  };
  app.get("/admin/cache/stats", (c) => c.json(guard(c.req.raw.headers).stats()));
  app.post("/admin/cache/purge", async (c) => {
    const service = guard(c.req.raw.headers);
    const text = await c.req.raw.bytes();
    const { json } = parseJsonBody(text.length ? text : new TextEncoder().encode("{}"));
    const purged = await service.purge(purgeFilter(json));
    return c.json({ purged });
  });
  app.all("/admin/*", (c) => {
    throw new NotFound(c.req.method, c.req.path);
  });
}

function purgeFilter(json: Record<string, unknown>): PurgeFilter {
  if (typeof json.model === "string" && json.model) return { model: json.model };
  if (typeof json.key === "string" && /^[0-9a-f]{64}$/.test(json.key)) return { key: json.key };
  if (Object.keys(json).length === 0 || json.all === true) return { all: true };
  throw new InvalidRequest(
    'Purge what? Send {} or {"all": true} for everything, {"model": "<name>"}, or {"key": "<64 hex digits>"}.',
  );
}
