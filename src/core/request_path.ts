/**
 * The request path as the bridge routes and forwards it. Deno hands the request target over as the client sent
 * it; a dot segment (`..`, `%2e%2e`), an encoded slash or a backslash would let a client steer the upstream URL
 * outside the base URL's path (with the bridge's own key in shared mode), so such paths are refused with 400.
 * What is left is normalized (RFC 3986 §6.2.2): percent-encoded unreserved characters decoded, so the same
 * resource has one spelling for routing and for the cache key.
 */
import { InvalidRequest } from "./errors.ts";
import { rememberedLately } from "./memo.ts";

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/** The normalized path, or an InvalidRequest (400) for one the bridge refuses to forward. */
export const normalizePath: (raw: string) => string = rememberedLately(256, checkedPath);

function checkedPath(raw: string): string {
  if (!raw.startsWith("/")) throw refused("it does not start with '/'");
  // deno-lint-ignore no-control-regex
  if (/[\\\x00-\x20\x7f]|%5c/i.test(raw)) {
    throw refused("it holds a backslash, a space or a control character");
  }
  if (/%(?![0-9a-fA-F]{2})/.test(raw)) throw refused("it holds an invalid percent-encoding");
  if (/%2f/i.test(raw)) throw refused("it holds an encoded slash (%2F)");
  if (/%[01][0-9a-fA-F]|%7f/i.test(raw)) throw refused("it holds an encoded control character");
  const path = raw.replace(UNRESERVED, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)));
  for (const segment of path.split("/")) {
    if (segment === "." || segment === "..") throw refused("it holds a dot segment ('.' or '..')");
  }
  return path;
}

/** The path of a request URL as the client sent it (Deno does not resolve dot segments in `request.url`). */
export function rawPathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

function refused(why: string): InvalidRequest {
  return new InvalidRequest(`Request path refused: ${why}.`, "invalid_path");
}
