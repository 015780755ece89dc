/**
 * Masks the bridge's own secrets (its upstream API keys) in an upstream answer before a client sees it: an
 * upstream that echoes the key it was sent ("Incorrect API key provided: sk-…") must not hand it to the
 * bridge's clients. Headers are rewritten; a body is rewritten as it streams, holding back only a tail that could
 * be the start of a key (keys hold no line break, so an SSE event's end is never held).
 */
import { concatBytes, indexOfBytes } from "../core/bytes.ts";

const MASK = new TextEncoder().encode("***");

export class SecretMask {
  readonly #secrets: Uint8Array[];
  readonly #texts: string[];

  constructor(secrets: readonly string[]) {
    this.#texts = [...new Set(secrets.filter((secret) => secret.length >= 4))];
    this.#secrets = this.#texts.map((secret) => new TextEncoder().encode(secret));
  }

  get empty(): boolean {
    return this.#secrets.length === 0;
  }

  /** The response with every secret in its headers and body replaced by `***`. */
  response(response: Response): Response {
    if (this.empty) return response;
    const headers = new Headers();
    response.headers.forEach((value, name) => headers.append(name, this.text(value)));
    const body = response.body?.pipeThrough(this.stream()) ?? null;
    return new Response(body, { status: response.status, statusText: response.statusText, headers });
  }

  text(value: string): string {
    for (const secret of this.#texts) value = value.replaceAll(secret, "***");
    return value;
  }

  /** A whole body with every secret replaced. */
  bytes(body: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
    const { out, held } = this.#mask(body, true);
    return held.length ? concatBytes([out, held]) : out;
  }

  stream(): TransformStream<Uint8Array, Uint8Array> {
    let carry: Uint8Array = new Uint8Array(0);
    return new TransformStream({
      transform: (chunk, controller) => {
        const { out, held } = this.#mask(carry.length ? concatBytes([carry, chunk]) : chunk, false);
        carry = held;
        if (out.length) controller.enqueue(out);
      },
      flush: (controller) => {
        if (carry.length) controller.enqueue(carry);
      },
    });
  }

  /** Replaces whole secrets; unless `final`, holds back a tail that is a prefix of a secret. */
  #mask(input: Uint8Array, final: boolean): { out: Uint8Array<ArrayBuffer>; held: Uint8Array<ArrayBuffer> } {
    let bytes = input;
    for (const secret of this.#secrets) bytes = replaceAll(bytes, secret);
    let hold = 0;
    if (!final) {
      for (const secret of this.#secrets) {
        for (let length = Math.min(secret.length - 1, bytes.length); length > hold; length--) {
          if (startsWithTail(bytes, secret, length)) {
            hold = length;
            break;
          }
        }
      }
    }
    const copy = bytes.buffer instanceof ArrayBuffer
      ? bytes as Uint8Array<ArrayBuffer>
      : concatBytes([bytes]);
    return { out: copy.subarray(0, copy.length - hold), held: copy.slice(copy.length - hold) };
  }
}

/** Whether the last `length` bytes of `bytes` are the first `length` bytes of `secret`. */
function startsWithTail(bytes: Uint8Array, secret: Uint8Array, length: number): boolean {
  const offset = bytes.length - length;
  for (let i = 0; i < length; i++) if (bytes[offset + i] !== secret[i]) return false;
  return true;
}

function replaceAll(bytes: Uint8Array, secret: Uint8Array): Uint8Array {
  let parts: Uint8Array[] | undefined;
  let from = 0;
  for (let at = indexOfBytes(bytes, secret); at >= 0; at = indexOfBytes(bytes, secret, from)) {
    (parts ??= []).push(bytes.subarray(from, at), MASK);
    from = at + secret.length;
  }
  if (!parts) return bytes;
  parts.push(bytes.subarray(from));
  return concatBytes(parts);
}
