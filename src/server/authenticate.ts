/**
 * Client access keys (shared mode): every proxied request must carry one of the configured keys, in
 * `Authorization: Bearer …` or `x-api-key`; otherwise 401 and the upstream is never called. The key's label is
 * the request's tenant.
 */
import { BridgeError } from "../core/errors.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { type AccessKeys, presentedKey } from "../upstream/keys.ts";

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

/** The tenant (the access key's label) of a request, or an InvalidApiKey (401). */
export function authenticate(keys: AccessKeys, metrics: BridgeMetrics, headers: Headers): string {
  const tenant = keys.identify(presentedKey(headers));
  if (tenant === undefined) {
    metrics.authFailures.inc();
    throw new InvalidApiKey();
  }
  metrics.tenantRequests.inc({ tenant });
  return tenant;
}
