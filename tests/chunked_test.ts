import { UpstreamProtocolError } from "../src/core/errors.ts";
import { ChunkedDecoder } from "../src/upstream/transport/chunked.ts";
import { assert, assertEquals } from "./assert.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const WIRE = "5;ext=1\r\nHello\r\n1\r\n,\r\nC\r\n world! 🎉\r\n0\r\nx-trailer: yes\r\n\r\nNEXT";

function decode(pieces: Uint8Array<ArrayBuffer>[]): { body: string; leftover: string; done: boolean } {
  const chunked = new ChunkedDecoder();
  const out: Uint8Array[] = [];
  let after = "";
  // Like the client: once the body is done, what follows belongs to the connection, not the decoder.
  for (const piece of pieces) {
    if (chunked.done) after += decoder.decode(piece);
    else out.push(...chunked.push(piece));
  }
  const bytes = new Uint8Array(out.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of out) bytes.set(part, (offset += part.length) - part.length);
  return {
    body: decoder.decode(bytes),
    leftover: decoder.decode(chunked.leftover) + after,
    done: chunked.done,
  };
}

Deno.test("chunked body decodes the same whole, byte by byte, and split at every offset", () => {
  const wire = encoder.encode(WIRE);
  const whole = decode([wire]);
  assertEquals(whole, { body: "Hello, world! 🎉", leftover: "NEXT", done: true });
  const bytes = Array.from(wire, (_, i) => wire.subarray(i, i + 1));
  assertEquals(decode(bytes).body, whole.body);
  for (let cut = 1; cut < wire.length; cut++) {
    assertEquals(decode([wire.subarray(0, cut), wire.subarray(cut)]), whole, `split at ${cut}`);
  }
});

Deno.test("chunked decoder rejects a bad size line", () => {
  let failed = false;
  try {
    new ChunkedDecoder().push(encoder.encode("zz\r\n"));
  } catch (error) {
    failed = error instanceof UpstreamProtocolError;
  }
  assert(failed);
});
