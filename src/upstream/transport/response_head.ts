/**
 * Parses the head of an HTTP/1.x response (RFC 9112 §4–§6) into what the client is shown (end-to-end headers)
 * and what only the connection needs (framing and whether it may be reused). Strict: anything in doubt is an
 * UpstreamProtocolError, and the connection it came on is closed.
 */
import { UpstreamProtocolError } from "../../core/errors.ts";
import { isForwardedResponseHeader } from "../headers.ts";
import { isFieldValue, isToken } from "./request_head.ts";

/** How the body's end is known (RFC 9112 §6.3). */
export type Framing = "none" | "length" | "chunked" | "close";

export interface ResponseHead {
  readonly status: number;
  readonly statusText: string;
  /** End-to-end headers only, as name/value pairs: hop-by-hop and framing headers are left out. */
  readonly headers: [string, string][];
  /** The declared body length, with `framing` "length". */
  readonly contentLength?: number;
  /** Content codings, in the order applied (`content-encoding: gzip, br` -> ["gzip", "br"]); identity left out. */
  readonly encodings: readonly string[];
  /**
   * Whether the connection may carry another request after this response: HTTP/1.1 without `Connection: close`
   * (HTTP/1.0 only with keep-alive), and no framing in doubt (Transfer-Encoding together with Content-Length).
   */
  readonly keepAlive: boolean;
  /** Whether a Transfer-Encoding chunked body is declared (the framing is decided with the method and status). */
  readonly chunked: boolean;
}

const MAX_HEADERS = 256;

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
  const match = /^HTTP\/1\.([01]) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(lines[0]);
  if (!match) throw malformed(`a status line of '${lines[0].slice(0, 60)}'`);
  if (lines.length - 1 > MAX_HEADERS) throw malformed(`more than ${MAX_HEADERS} header lines`);
  let headers: [string, string][] = [];
  let contentLength: number | undefined;
  const transferCodings: string[] = [];
  const encodings: string[] = [];
  let connection = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    // RFC 9112 §5.1–5.2: no whitespace before the colon, no line folding.
    const rawName = colon > 0 ? line.slice(0, colon) : "";
    if (!isToken(rawName)) throw malformed(`a header line of '${line.slice(0, 60)}'`);
    const name = rawName.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (!isFieldValue(value)) throw malformed(`a control character in header '${name}'`);
    if (name === "content-length") {
      for (const item of value.split(",")) {
        const length = item.trim();
        if (!/^\d{1,15}$/.test(length) || (contentLength !== undefined && contentLength !== Number(length))) {
          throw malformed(`a content-length of '${value.slice(0, 30)}'`);
        }
        contentLength = Number(length);
      }
    } else if (name === "transfer-encoding") transferCodings.push(...list(value));
    else if (name === "content-encoding") {
      encodings.push(...list(value).filter((coding) => coding !== "identity"));
    } else if (name === "connection") connection += value.toLowerCase() + ",";
    if (isForwardedResponseHeader(name)) headers.push([name, value]);
  }
  const listed = list(connection);
  if (listed.length) headers = headers.filter(([name]) => !listed.includes(name));
  // RFC 9112 §6.1: the final transfer coding must be chunked; the bridge applies no other transfer coding.
  const chunked = transferCodings.length > 0;
  if (chunked && (transferCodings.length !== 1 || transferCodings[0] !== "chunked")) {
    throw malformed(
      `a transfer-encoding of '${transferCodings.join(", ").slice(0, 60)}' (only chunked is supported)`,
    );
  }
  const persistent = match[1] === "1" ? !listed.includes("close") : listed.includes("keep-alive");
  return {
    status: Number(match[2]),
    statusText: match[3] ?? "",
    headers,
    // RFC 9112 §6.3: with chunked transfer coding, a content-length is ignored, and the message is suspect.
    contentLength: chunked ? undefined : contentLength,
    encodings,
    chunked,
    keepAlive: persistent && !(chunked && contentLength !== undefined),
  };
}

/** The framing of a response's body, by the request method and the status (RFC 9112 §6.3). */
export function framingOf(head: ResponseHead, method: string): Framing {
  if (method === "HEAD" || head.status === 204 || head.status === 304 || head.status < 200) return "none";
  if (head.chunked) return "chunked";
  if (head.contentLength !== undefined) return head.contentLength === 0 ? "none" : "length";
  return "close";
}

function list(value: string): string[] {
  return value.toLowerCase().split(",").map((item) => item.trim()).filter(Boolean);
}

function malformed(what: string): UpstreamProtocolError {
  return new UpstreamProtocolError(`its response head has ${what}`);
}
