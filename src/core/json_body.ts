/**
 * The JSON body of a request to an endpoint the bridge understands, read as a hostile client may send it:
 * invalid UTF-8 and nesting deeper than MAX_DEPTH are a 400 before JSON.parse sees them (the cache key's
 * canonical form walks the value recursively), and numbers JSON.parse cannot hold exactly (`1e400` becomes
 * Infinity, then null; two integers beyond 2^53 become one double) are flagged, so the cache key reads their
 * text instead (cache/key.ts) and different requests never share an answer.
 */
import { InvalidRequest } from "./errors.ts";

/** The deepest nesting of arrays and objects a request body may have. */
export const MAX_DEPTH = 128;

export interface JsonBody {
  readonly json: Record<string, unknown>;
  /** The body holds a number whose text a double cannot represent exactly. */
  readonly inexactNumbers: boolean;
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true });

export function parseJsonBody(body: Uint8Array | null): JsonBody {
  if (!body) throw invalid("Request body is empty: this endpoint expects a JSON object.");
  let text: string;
  try {
    text = fatalDecoder.decode(body);
  } catch {
    throw invalid("Request body is not valid UTF-8.");
  }
  const { tooDeep, inexactNumbers } = scanJson(body);
  if (tooDeep) throw invalid(`Request body nests arrays and objects deeper than ${MAX_DEPTH} levels.`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid(`Request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("Request body must be a JSON object.");
  }
  return { json: value as Record<string, unknown>, inexactNumbers };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;

/**
 * One pass over the bytes outside strings: how deep the nesting goes (stopping past MAX_DEPTH), and whether a
 * number token might not survive JSON.parse (more than 15 significant digits, or an exponent). Such a token is
 * then checked exactly.
 */
export function scanJson(bytes: Uint8Array): { tooDeep: boolean; inexactNumbers: boolean } {
  let depth = 0;
  let inexactNumbers = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === QUOTE) {
      for (i++; i < bytes.length && bytes[i] !== QUOTE; i++) if (bytes[i] === BACKSLASH) i++;
    } else if (byte === 0x5b || byte === 0x7b) { // [ {
      if (++depth > MAX_DEPTH) return { tooDeep: true, inexactNumbers };
    } else if (byte === 0x5d || byte === 0x7d) { // ] }
      depth--;
    } else if (byte === MINUS || (byte >= 0x30 && byte <= 0x39)) {
      const start = i;
      let exponent = false;
      for (; i + 1 < bytes.length; i++) {
        const next = bytes[i + 1];
        if (next === 0x65 || next === 0x45) exponent = true; // e E
        else if (!((next >= 0x30 && next <= 0x39) || next === 0x2e || next === 0x2b || next === MINUS)) break;
      }
      if (!inexactNumbers && (exponent || i + 1 - start > 15)) {
        inexactNumbers = !roundTrips(String.fromCharCode(...bytes.subarray(start, i + 1)));
      }
    }
  }
  return { tooDeep: false, inexactNumbers };
}

/** Whether a number's text survives as a double: finite, not flushed to zero, at most 15 significant digits. */
function roundTrips(token: string): boolean {
  const value = Number(token);
  if (!Number.isFinite(value)) return false;
  const mantissa = token.replace(/^-/, "").split(/[eE]/)[0].replace(".", "");
  const significant = mantissa.replace(/^0+/, "").replace(/0+$/, "");
  if (value === 0) return significant === "";
  return significant.length <= 15;
}

function invalid(message: string): InvalidRequest {
  return new InvalidRequest(message, "invalid_json");
}
