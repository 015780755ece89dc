/**
 * The request head the pooled client writes (RFC 9112 §3): validated first, so nothing a client or a plugin
 * made up is ever written raw (a CR/LF in a method or header would split the request: smuggling).
 */
import { InvalidUpstreamRequest } from "../../core/errors.ts";
import { isFieldValue, isToken } from "../../core/http_syntax.ts";

export { isFieldValue, isToken };
import { connectionListed, CREDENTIAL_HEADERS, isForwardedRequestHeader } from "../headers.ts";

/** A request target: visible ASCII only (the URL serializer percent-encodes the rest). */
const TARGET = /^\/[\x21-\x7e]*$/;

const encoder = new TextEncoder();
const NON_ASCII = /[^ -~\t\r\n]/;

/**
 * The head of a request to `target`. `credentials`: undefined passes the client's own on; null removes them; a
 * string is sent as the `Authorization` value instead (shared mode). Throws InvalidUpstreamRequest for a method,
 * target or header that is not valid HTTP.
 */
/** Throws InvalidUpstreamRequest unless the method is a token and every header a valid field (any transport). */
export function assertSendable(method: string, headers: Headers): void {
  if (!isToken(method)) throw invalidMethod(method);
  headers.forEach((value, name) => checkedValue(checkedName(name), value));
}

function invalidMethod(method: string): InvalidUpstreamRequest {
  return new InvalidUpstreamRequest(`the method ${JSON.stringify(method.slice(0, 40))} is not a token`);
}

export function encodeRequestHead(
  method: string,
  target: URL,
  headers: Headers,
  body: Uint8Array | null,
  credentials: string | null | undefined,
): Uint8Array {
  if (!isToken(method)) throw invalidMethod(method);
  const path = `${target.pathname}${target.search}`;
  if (!TARGET.test(path)) {
    throw new InvalidUpstreamRequest("the request target has characters HTTP does not allow");
  }
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${target.host}\r\n`;
  if (credentials) head += `authorization: ${checkedValue("authorization", credentials)}\r\n`;
  // The bridge decodes what it has to (think filter, cache); asking for no encoding saves it the work.
  head += "accept-encoding: identity\r\n";
  const keepCredentials = credentials === undefined;
  const listed = headers.has("connection") ? connectionListed(headers) : [];
  // forEach, not for-of: Headers' iterator costs three times as much per request.
  headers.forEach((value, name) => {
    if (!isForwardedRequestHeader(name) || listed.includes(name)) return;
    if (keepCredentials || !CREDENTIAL_HEADERS.has(name)) {
      head += `${checkedName(name)}: ${checkedValue(name, value)}\r\n`;
    }
  });
  if (body !== null || method === "POST" || method === "PUT" || method === "PATCH") {
    head += `content-length: ${body?.length ?? 0}\r\n`;
  }
  head += "\r\n";
  // Header values are Latin-1 byte strings; TextEncoder would turn bytes above 0x7f into two.
  if (!NON_ASCII.test(head)) return encoder.encode(head);
  return Uint8Array.from(head, (char) => char.charCodeAt(0) & 0xff);
}

function checkedName(name: string): string {
  if (!isToken(name)) {
    throw new InvalidUpstreamRequest(`the header name ${JSON.stringify(name.slice(0, 40))} is not a token`);
  }
  return name;
}

function checkedValue(name: string, value: string): string {
  if (!isFieldValue(value)) {
    throw new InvalidUpstreamRequest(
      `the value of header '${name}' holds a control character (CR, LF or NUL)`,
    );
  }
  return value;
}
