/**
 * Client access keys (shared mode): every proxied request must carry one of the configured keys, in
 * `Authorization: Bearer …` or `x-api-key`; otherwise 401 and the upstream is never called. The key's label is
 * the request's tenant.
 */
import type { MiddlewareHandler } from "hono";
import { BridgeError } from "../core/errors.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { type AccessKeys, presentedKey } from "../upstream/keys.ts";

declare module "hono" {
  interface ContextVariableMap {
    tenant: string | undefined;
  }
}

export class InvalidApiKey extends BridgeError {
  constructor() {
    super(
      401,
      "invalid_request_error",
      "invalid_api_key",
      "Missing or unknown access key: send one of the bridge's access keys as 'Authorization: Bearer <key>'.",
      { "www-authenticate": 'Bearer realm="deepseek-ollama-bridge"' },
    );
  }
}

export const authenticate = (keys: AccessKeys, metrics: BridgeMetrics): MiddlewareHandler =>
  async function authenticate(c, next) {
    const tenant = keys.identify(presentedKey(c.req.raw.headers));
    if (tenant === undefined) {
      metrics.authFailures.inc();
      throw new InvalidApiKey();
    }
    c.set("tenant", tenant);
    metrics.tenantRequests.inc({ tenant });
    await next();
  };
