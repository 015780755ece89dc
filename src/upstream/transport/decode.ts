/**
 * Content decoding of upstream bodies (gzip, deflate, br, zstd), so the think filter and the cache always see
 * text and a stored answer never depends on one client's encoding. Bounded both ways a compression bomb could
 * go: a whole body decodes to at most `maxBytes` (or the answer is a 502 before any header went out), and a
 * stream may grow at most `MAX_RATIO` times over what arrived (or it ends with an error event).
 */
import zlib from "node:zlib";
import { UpstreamProtocolError } from "../../core/errors.ts";
import { concatBytes } from "../../core/bytes.ts";

/** Decoded bytes allowed per encoded byte in a stream, beyond a first MiB. */
export const MAX_RATIO = 100;
const RATIO_ALLOWANCE = 1024 * 1024;

const SUPPORTED = new Set(["gzip", "x-gzip", "deflate", "br", "zstd"]);

/** Whether the bridge can decode every one of these content codings. */
export function decodable(encodings: readonly string[]): boolean {
  return encodings.every((coding) => SUPPORTED.has(coding));
}

/** One coding's decoder as a stream transform. */
function decoderOf(coding: string): TransformStream<Uint8Array, Uint8Array> {
  switch (coding) {
    case "gzip":
    case "x-gzip":
      return new DecompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>;
    case "deflate":
      return new DecompressionStream("deflate") as TransformStream<Uint8Array, Uint8Array>;
    case "br":
      return new DecompressionStream("brotli" as CompressionFormat) as TransformStream<
        Uint8Array,
        Uint8Array
      >;
    case "zstd":
      return nodeTransform(zlib.createZstdDecompress());
    default:
      throw new UpstreamProtocolError(`its content-encoding '${coding}' is not one the bridge decodes`);
  }
}

/** A node:zlib stream as a Web TransformStream. */
function nodeTransform(inflater: zlib.ZstdDecompress): TransformStream<Uint8Array, Uint8Array> {
  let failure: Error | undefined;
  let controller!: TransformStreamDefaultController<Uint8Array>;
  inflater.on("data", (chunk: Uint8Array) => controller.enqueue(new Uint8Array(chunk)));
  inflater.on("error", (error: Error) => failure = error);
  const settle = (resolve: () => void, reject: (error: Error) => void) => (error?: Error | null) =>
    error ?? failure ? reject(error ?? failure!) : resolve();
  return new TransformStream({
    start: (c) => void (controller = c),
    transform: (chunk) => new Promise((resolve, reject) => inflater.write(chunk, settle(resolve, reject))),
    flush: () => new Promise((resolve, reject) => inflater.end(settle(resolve, reject))),
    cancel: () => void inflater.destroy(),
  });
}

/**
 * The body decoded as it streams (codings undone in reverse order of application), ending with an
 * UpstreamProtocolError once it grows past MAX_RATIO times the encoded bytes.
 */
export function decodeStream(
  body: ReadableStream<Uint8Array>,
  encodings: readonly string[],
  maxRatio: number = MAX_RATIO,
): ReadableStream<Uint8Array> {
  let encoded = 0;
  let decoded = 0;
  let stream = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        encoded += chunk.length;
        controller.enqueue(chunk);
      },
    }),
  );
  for (const coding of [...encodings].reverse()) stream = stream.pipeThrough(decoderOf(coding));
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        decoded += chunk.length;
        if (decoded > encoded * maxRatio + RATIO_ALLOWANCE) {
          throw new UpstreamProtocolError(
            `its compressed stream expands more than ${maxRatio} times (a compression bomb?)`,
          );
        }
        controller.enqueue(chunk);
      },
    }),
  );
}

/** Reads a whole body (decoding it if `encodings` says so) into memory, refusing more than `maxBytes`. */
export async function readWhole(
  body: ReadableStream<Uint8Array>,
  encodings: readonly string[],
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  // A whole body is bounded by its decoded size alone (a JSON of spaces may rightly compress 1000:1).
  const stream = encodings.length ? decodeStream(body, encodings, Infinity) : body;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > maxBytes) {
        throw new UpstreamProtocolError(
          `its body is larger than --max-response-size (${maxBytes} bytes${
            encodings.length ? " decoded" : ""
          })`,
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  return concatBytes(chunks);
}
