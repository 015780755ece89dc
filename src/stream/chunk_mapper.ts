/**
 * A chunk mapper: a pure, synchronous rewrite of a byte stream, fed one chunk at a time. The stream relay calls
 * one directly (no extra stream stage before the first byte); `asTransformStream` wraps one for pipeThrough.
 */

export interface ChunkMapper {
  /** The bytes to send for this chunk (possibly none yet). */
  feed(chunk: Uint8Array): Uint8Array | undefined;
  /** The bytes still to send when the stream ends without error. */
  end(): Uint8Array | undefined;
}

export function asTransformStream(mapper: ChunkMapper): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      const out = mapper.feed(chunk);
      if (out?.length) controller.enqueue(out);
    },
    flush(controller) {
      const out = mapper.end();
      if (out?.length) controller.enqueue(out);
    },
  });
}
