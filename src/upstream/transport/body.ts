/**
 * A response body read off a connection as it arrives, de-chunked, ending exactly at its framing. `finish(clean)`
 * is called once: clean when the body ended exactly at its framing with no byte beyond it (the connection may
 * then be reused); not clean when it failed, was cancelled, or was framed by the connection closing.
 */
import { UpstreamUnreachable } from "../../core/errors.ts";
import type { Cancellation } from "../../core/time.ts";
import { ChunkedDecoder } from "./chunked.ts";
import type { Connection } from "./connection.ts";
import type { Framing } from "./response_head.ts";

export function bodyStream(
  connection: Connection,
  framing: Exclude<Framing, "none">,
  contentLength: number | undefined,
  cancellation: Cancellation,
  finish: (clean: boolean) => void,
): ReadableStream<Uint8Array> {
  const decoder = framing === "chunked" ? new ChunkedDecoder() : undefined;
  let remaining = framing === "length" ? contentLength! : Infinity;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const bytes = await connection.read();
          if (bytes === null) {
            if (framing !== "close") throw new UpstreamUnreachable("the connection closed mid-body");
            finish(false);
            return controller.close();
          }
          let ended = false;
          if (decoder) {
            for (const piece of decoder.push(bytes)) controller.enqueue(piece);
            if (decoder.done) {
              connection.unread(decoder.leftover);
              ended = true;
            }
          } else {
            const take = Math.min(remaining, bytes.length);
            controller.enqueue(take === bytes.length ? bytes : bytes.subarray(0, take));
            remaining -= take;
            if (remaining === 0) {
              connection.unread(bytes.subarray(take));
              ended = true;
            }
          }
          if (ended) {
            finish(true);
            return controller.close();
          }
          if ((controller.desiredSize ?? 0) <= 0) return;
        }
      } catch (error) {
        finish(false);
        controller.error(cancellation.aborted ? cancellation.reason : error);
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}
