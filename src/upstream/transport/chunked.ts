/**
 * A decoder for HTTP/1.1 chunked transfer coding (RFC 9112 §7.1): a pure state machine fed with whatever the
 * socket delivered, returning the body bytes it could decode. Chunk extensions and trailers are skipped.
 */

import { UpstreamProtocolError } from "../../core/errors.ts";

const CR = 13;
const LF = 10;

type State = "size" | "data" | "data-end" | "trailer" | "done";

export class ChunkedDecoder {
  #state: State = "size";
  #remaining = 0;
  /** The text of a size or trailer line split across pushes. */
  #line = "";
  #trailerBytes = 0;
  /** Bytes after the final chunk that belong to whatever follows on the connection. */
  leftover: Uint8Array<ArrayBuffer> = new Uint8Array(0);

  get done(): boolean {
    return this.#state === "done";
  }

  /** Decodes `input`; returns the body bytes it held (views into `input`). Throws on malformed framing. */
  push(input: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer>[] {
    const out: Uint8Array<ArrayBuffer>[] = [];
    let i = 0;
    while (i < input.length && this.#state !== "done") {
      switch (this.#state) {
        case "data": {
          const take = Math.min(this.#remaining, input.length - i);
          out.push(input.subarray(i, i + take));
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = "data-end";
          break;
        }
        case "data-end": {
          // The CRLF after chunk data: accept a bare LF too, as lenient parsers do.
          const byte = input[i++];
          if (byte === LF) this.#state = "size";
          else if (byte !== CR) {
            throw malformed("no CRLF after a chunk's data");
          }
          break;
        }
        default: {
          const end = input.indexOf(LF, i);
          const stop = end < 0 ? input.length : end;
          for (let j = i; j < stop; j++) this.#line += String.fromCharCode(input[j]);
          if (this.#line.length > 4096) throw malformed("a size or trailer line over 4 KiB");
          i = end < 0 ? input.length : end + 1;
          if (end >= 0) this.#endLine(this.#line.replace(/\r$/, ""));
        }
      }
    }
    if (this.#state === "done") this.leftover = input.subarray(i);
    return out;
  }

  #endLine(line: string): void {
    this.#line = "";
    if (this.#state === "trailer") {
      if (line === "") this.#state = "done";
      else if ((this.#trailerBytes += line.length) > MAX_TRAILER_BYTES) {
        throw malformed("trailers over 64 KiB");
      }
      return;
    }
    const sizeText = line.split(";", 1)[0].trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(sizeText)) {
      throw malformed(`an invalid chunk size '${sizeText.slice(0, 20)}'`);
    }
    this.#remaining = parseInt(sizeText, 16);
    this.#state = this.#remaining === 0 ? "trailer" : "data";
  }
}

const MAX_TRAILER_BYTES = 64 * 1024;

function malformed(what: string): UpstreamProtocolError {
  return new UpstreamProtocolError(`its chunked body has ${what}`);
}
