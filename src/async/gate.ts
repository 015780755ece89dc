/**
 * The async gate (DESIGN §3): a cacheable request whose JSON body carries `request_fingerprint` is a job. The
 * client is answered 202 until the job is done, then gets the answer (in the shape it asked for); the same
 * fingerprint with a different request is a 409.
 */
import { cacheKey, isCacheable } from "../cache/key.ts";
import { replay } from "../cache/service.ts";
import { BridgeError, InvalidRequest } from "../core/errors.ts";
import type { ProxyRequest } from "../core/request.ts";
import type { Answer } from "../core/answer.ts";
import type { JobStore } from "./job_request.ts";

/** How long a client is asked to wait before asking again. */
const RETRY_AFTER_SECONDS = 1;

export class FingerprintConflict extends BridgeError {
  constructor(fingerprint: string) {
    super(
      409,
      "invalid_request_error",
      "request_fingerprint_conflict",
      `The request_fingerprint '${fingerprint}' belongs to a different request: use a new fingerprint for it.`,
    );
  }
}

/**
 * The gate's answer for a request: a 202/409 response, the finished job's answer, or undefined for a request
 * that is not a job (it goes on as usual).
 */
export async function asyncGate(
  jobs: JobStore,
  request: ProxyRequest,
): Promise<Response | Answer | undefined> {
  const fingerprint = request.json?.request_fingerprint;
  if (fingerprint === undefined || !isCacheable(request)) return undefined;
  if (typeof fingerprint !== "string" || !/^[\x20-\x7e]{1,256}$/.test(fingerprint)) {
    throw new InvalidRequest(
      "request_fingerprint must be a string of 1 to 256 printable ASCII characters.",
      "invalid_request_fingerprint",
    );
  }
  const submission = await jobs.submit(fingerprint, cacheKey(request, request.tenant), request);
  switch (submission.kind) {
    case "conflict":
      throw new FingerprintConflict(fingerprint);
    case "done":
      return replay(submission.answer);
    default:
      return new Response(
        JSON.stringify({ message: "Wait for a while and try again.", request_fingerprint: fingerprint }),
        {
          status: 202,
          headers: { "content-type": "application/json", "retry-after": String(RETRY_AFTER_SECONDS) },
        },
      );
  }
}
