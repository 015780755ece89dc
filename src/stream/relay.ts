/**
 * Relays a response body to the client chunk by chunk as it arrives, and makes sure every ending is an honest
 * one: a stream that fails, times out or is stopped by a shutdown ends with an error event instead of a silent
 * cut; a client that goes away cancels the source (and so the upstream request).
 */
import { type BridgeError, UpstreamProtocolError } from "../core/errors.ts";
import { type Cancellation, schedule, type Timer } from "../core/time.ts";
import type { ChunkMapper } from "./chunk_mapper.ts";
import { endsWithFinalEvent, errorEvent, KEEPALIVE_COMMENT, type StreamFormat } from "./format.ts";

export type RelayOutcome = "complete" | "failed" | "cancelled";

export interface RelayOptions {
  /** The stream format, or undefined for an opaque body (a failure then errors the response). */
  format?: StreamFormat;
  /**
   * After this many ms without a chunk, send a keep-alive: an SSE comment, or for NDJSON `ndjsonKeepalive()`'s
   * line (NDJSON has no comments). 0 turns it off.
   */
  keepaliveMs?: number;
  /** NDJSON's keep-alive: a line every client of the stream reads as an empty message. */
  ndjsonKeepalive?: () => Uint8Array;
  /** Aborts when the stream must end now (shutdown deadline); its reason is sent as the error event. */
  stop?: Cancellation;
  /** A read of the source already under way (respond() looked at the first chunk before the headers went). */
  firstRead?: Promise<ReadableStreamReadResult<Uint8Array>>;
  /**
   * The source ends when the upstream closes the connection: a stream whose end lacks its final event was cut,
   * and ends with an error event instead of looking finished.
   */
  requireFinalEvent?: boolean;
  /** Rewrites the chunks on their way (the think filter), in the relay itself: no extra stream stage. */
  map?: ChunkMapper;
  /** Maps a read error to the error the client is told about. */
  failure(error: unknown): BridgeError;
  onFirstChunk?(): void;
  /** Called with the size of every chunk passed on. */
  onChunk?(size: number): void;
  onKeepalive?(): void;
  /** Called once, when the relay is over. */
  onEnd(outcome: RelayOutcome, error?: BridgeError): void;
}

type Step = ReadableStreamReadResult<Uint8Array> | "keepalive" | "stop";

export function relay(
  source: ReadableStream<Uint8Array> | ReadableStreamDefaultReader<Uint8Array>,
  options: RelayOptions,
): ReadableStream<Uint8Array> {
  const reader = source instanceof ReadableStream ? source.getReader() : source;
  const keepaliveMs = options.format === "sse" || (options.format === "ndjson" && options.ndjsonKeepalive)
    ? options.keepaliveMs ?? 0
    : 0;
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined = options.firstRead;
  /** With requireFinalEvent: the last bytes passed on, as text. */
  let recent = "";
  const tailDecoder = new TextDecoder();
  let started = false;
  /** The last chunk passed on: where a failure's error event has to start from. */
  let tail: Uint8Array = new Uint8Array(0);
  let ended = false;

  function end(outcome: RelayOutcome, error?: BridgeError): void {
    if (ended) return;
    ended = true;
    options.onEnd(outcome, error);
  }

  function fail(controller: ReadableStreamDefaultController<Uint8Array>, error: BridgeError): void {
    end("failed", error);
    reader.cancel(error).catch(() => {});
    if (options.format) {
      controller.enqueue(errorEvent(options.format, error, tail));
      controller.close();
    } else {
      controller.error(error);
    }
  }

  /**
   * The next chunk, or a keep-alive tick, or the stop. Not Promise.race against a promise that lives as long as
   * the stream: every race would leave a reaction on it holding that call's result (a chunk) until the stream
   * ends — a whole answer kept in memory. Each wait here removes its own timer and stop listener.
   */
  function next(): Promise<Step> {
    const read = pending ??= reader.read();
    if (!options.stop && keepaliveMs <= 0) return read;
    if (options.stop?.aborted) return Promise.resolve("stop");
    return new Promise<Step>((resolve, reject) => {
      let timer: Timer | undefined;
      const removeStop = options.stop?.onAbort(() => settle(() => resolve("stop")));
      let settled = false;
      const settle = (action: () => void) => {
        if (settled) return;
        settled = true;
        timer?.cancel();
        removeStop?.();
        action();
      };
      if (keepaliveMs > 0) timer = schedule(keepaliveMs, () => settle(() => resolve("keepalive")));
      read.then((step) => settle(() => resolve(step)), (error) => settle(() => reject(error)));
    });
  }

  /** Passes a chunk on, keeping the first-chunk metric, the byte count and the tail for an error event. */
  function send(controller: ReadableStreamDefaultController<Uint8Array>, chunk: Uint8Array): void {
    if (!started) {
      started = true;
      options.onFirstChunk?.();
    }
    options.onChunk?.(chunk.byteLength);
    tail = chunk;
    if (options.requireFinalEvent) {
      recent = (recent + tailDecoder.decode(chunk, { stream: true })).slice(-1024);
    }
    controller.enqueue(chunk);
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Loops only when the mapper swallowed a chunk whole (say, all reasoning): then it reads on.
      for (;;) {
        let step: Step;
        try {
          step = await next();
        } catch (error) {
          return fail(controller, options.failure(error));
        }
        if (step === "stop") return fail(controller, options.failure(options.stop!.reason));
        if (step === "keepalive") {
          // An NDJSON keep-alive goes only between lines, never into one the upstream is still writing.
          if (options.format === "ndjson" && tail.length && tail[tail.length - 1] !== 10) continue;
          options.onKeepalive?.();
          return controller.enqueue(
            options.format === "sse" ? KEEPALIVE_COMMENT : options.ndjsonKeepalive!(),
          );
        }
        pending = undefined;
        let chunk: Uint8Array | undefined;
        try {
          chunk = step.done ? options.map?.end() : options.map ? options.map.feed(step.value) : step.value;
        } catch (error) {
          return fail(controller, options.failure(error));
        }
        if (step.done) {
          if (chunk?.length) send(controller, chunk);
          if (options.requireFinalEvent && options.format && !endsWithFinalEvent(options.format, recent)) {
            return fail(
              controller,
              options.failure(
                new UpstreamProtocolError("the connection closed before the stream's final event"),
              ),
            );
          }
          end("complete");
          return controller.close();
        }
        if (chunk?.length) return send(controller, chunk);
      }
    },
    cancel(reason) {
      end("cancelled");
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
