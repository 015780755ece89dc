/**
 * What one request did, filled in by the steps as they go and read by the access log: the upstream status,
 * the bytes sent, and, for a streamed answer, when and how the stream ended.
 */
import type { RelayOutcome } from "../stream/relay.ts";

export class RequestTrace {
  upstreamStatus?: number;
  bytes?: number;
  /** Set for a streamed answer; resolves when the stream is over. */
  streamEnd?: Promise<RelayOutcome>;
  /** Free-form facts for the log line, such as the cache result. */
  readonly notes: Record<string, string> = {};
}

declare module "hono" {
  interface ContextVariableMap {
    trace: RequestTrace;
  }
}
