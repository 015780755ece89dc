/**
 * Parses the head of an HTTP/1.x response (RFC 9112 §4, §5) into what the client is shown (end-to-end
 * headers) and what only the connection needs (framing and keep-alive).
 */
import { isForwardedResponseHeader } from "../headers.ts";

export interface ResponseHead {
  readonly status: number;
  readonly statusText: string;
  /** End-to-end headers only, as name/value pairs: hop-by-hop and framing headers are left out. */
  readonly headers: [string, string][];
  /** Declared body length, or undefined. */
  readonly contentLength?: number;
  readonly chunked: boolean;
  /** `content-encoding`, lower-case, if any. */
  readonly encoding?: string;
  /** False for HTTP/1.0 without keep-alive and for `Connection: close`. */
  readonly keepAlive: boolean;
}

/** The index just past the blank line that ends the head, or -1 if it has not arrived yet. */
export function headEnd(buffer: Uint8Array, from = 0): number {
  for (let i = Math.max(0, from - 3); i + 3 < buffer.length; i++) {
    if (buffer[i] === 13 && buffer[i + 1] === 10 && buffer[i + 2] === 13 && buffer[i + 3] === 10) {
      return i + 4;
    }
  }
  return -1;
}

/** Parses a head that ends with its blank line (as found by `headEnd`). */
export function parseResponseHead(bytes: Uint8Array): ResponseHead {
  // Header bytes are Latin-1 (RFC 9110 §5.5): decode them byte for byte.
  let text = "";
  const end = bytes.length - 4;
  for (let i = 0; i < end; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, Math.min(i + 8192, end)));
  }
  const lines = text.split("\r\n");
  const match = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!match) throw new SyntaxError(`Malformed HTTP response status line: '${lines[0].slice(0, 60)}'`);
  let headers: [string, string][] = [];
  let contentLength: number | undefined;
  let chunked = false;
  let encoding: string | undefined;
  let connection = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) throw new SyntaxError(`Malformed HTTP response header line: '${line.slice(0, 60)}'`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== Number(value))) {
        throw new SyntaxError(`Malformed content-length in HTTP response: '${value.slice(0, 30)}'`);
      }
      contentLength = Number(value);
    } else if (name === "transfer-encoding") chunked ||= /\bchunked\b/i.test(value);
    else if (name === "content-encoding") encoding = value.toLowerCase();
    else if (name === "connection") connection += value.toLowerCase() + ",";
    if (isForwardedResponseHeader(name)) headers.push([name, value]);
  }
  if (connection) {
    const listed = connection.split(",").map((name) => name.trim());
    headers = headers.filter(([name]) => !listed.includes(name));
  }
  const keepAlive = match[1] === "1" ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return {
    status: Number(match[2]),
    statusText: match[3] ?? "",
    headers,
    // RFC 9112 §6.3: with chunked transfer coding, a content-length is ignored.
    contentLength: chunked ? undefined : contentLength,
    chunked,
    encoding,
    keepAlive,
  };
}
