/**
 * Parsers for flag values. Each takes the raw text from the command line or the environment and returns the
 * typed value, or throws `InvalidArgumentError` whose message says what was expected (commander prefixes it
 * with the flag's name and the offending value).
 */
import { InvalidArgumentError } from "commander";

/** A whole number within `[min, max]`. */
export function integerIn(min: number, max: number): (raw: string) => number {
  return function parseInteger(raw: string): number {
    const text = raw.trim();
    const value = /^[+-]?\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`Expected a whole number from ${min} to ${max}.`);
    }
    return value;
  };
}

/** A byte size such as `32MiB`, `512k`, `1048576`, at least `min` bytes. */
export function byteSize(min: number, max: number): (raw: string) => number {
  const units: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2 };
  units.mb = units.mib = units.m;
  units.g = units.gb = units.gib = 1024 ** 3;
  return function parseByteSize(raw: string): number {
    const match = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(raw);
    const unit = match ? units[match[2].toLowerCase()] : undefined;
    const value = match && unit ? Number(match[1]) * unit : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`Expected a size from ${min} to ${max} bytes, such as 512KiB or 32MiB.`);
    }
    return value;
  };
}

export interface ListenAddress {
  readonly hostname: string;
  readonly port: number;
}

/** `host:port`, `:port` or `[v6]:port`; port 0 asks the system for a free one. */
export function listenAddress(raw: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(raw.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError("Expected host:port, such as 127.0.0.1:3000, 0.0.0.0:3000 or [::1]:3000.");
  }
  return { hostname: match[1] ?? (match[2] || "0.0.0.0"), port };
}

/** An absolute http(s) URL without query or fragment, with any trailing slash removed. */
export function upstreamUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new InvalidArgumentError("Expected an http(s) URL, such as http://127.0.0.1:11434.");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash) {
    throw new InvalidArgumentError(
      "Expected an http(s) URL without query or fragment, such as https://api.deepseek.com.",
    );
  }
  url.pathname = url.pathname.replace(/\/+$/, "");
  return url;
}

/** A Redis URL: `redis://` or `rediss://`, a host, an optional port and database number. */
export function redisUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new InvalidArgumentError("Expected a Redis URL, such as redis://127.0.0.1:6379/0.");
  }
  if ((url.protocol !== "redis:" && url.protocol !== "rediss:") || !url.hostname || url.search || url.hash) {
    throw new InvalidArgumentError(
      "Expected a Redis URL, such as redis://127.0.0.1:6379/0 (rediss:// for TLS).",
    );
  }
  if (!/^\/?(\d{1,2})?$/.test(url.pathname)) {
    throw new InvalidArgumentError("Expected a database number as the Redis URL's path, such as /0.");
  }
  return url.href;
}

/** A key prefix: printable, no spaces or wildcards (it is matched with SCAN). */
export function redisPrefix(raw: string): string {
  if (!/^[A-Za-z0-9_.:\-]{0,64}$/.test(raw)) {
    throw new InvalidArgumentError("Expected up to 64 letters, digits and _ . : - such as bridge:.");
  }
  return raw;
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(...choices: T[]): (raw: string) => T {
  return function parseChoice(raw: string): T {
    const value = raw.trim().toLowerCase() as T;
    if (!choices.includes(value)) throw new InvalidArgumentError(`Expected one of: ${choices.join(", ")}.`);
    return value;
  };
}

/** An environment switch: `1/true/yes/on` or `0/false/no/off`. */
export function switchValue(raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off", ""].includes(value)) return false;
  throw new InvalidArgumentError("Expected true or false.");
}

/** A comma-separated list of tag names such as `think,thinking`. */
export function nameList(raw: string): string[] {
  const names = raw.split(",").map((name) => name.trim()).filter(Boolean);
  if (!names.length || names.some((name) => !/^[A-Za-z][\w.-]{0,31}$/.test(name))) {
    throw new InvalidArgumentError("Expected tag names separated by commas, such as think,thinking.");
  }
  return names;
}

/** A case-insensitive regular expression; an empty value means none. */
export function pattern(raw: string): RegExp | undefined {
  if (!raw.trim()) return undefined;
  try {
    return new RegExp(raw, "i");
  } catch (error) {
    throw new InvalidArgumentError(`Expected a regular expression: ${(error as Error).message}.`);
  }
}

/** Collects a repeatable key flag; a value may hold several keys separated by commas. */
export function keyList(raw: string, previous: string[] = []): string[] {
  return [...previous, ...raw.split(",").map((key) => key.trim()).filter(Boolean)];
}

/** Like keyList, but a `name=value` part after a comma belongs to the key before it (its limits). */
export function accessKeyList(raw: string, previous: string[] = []): string[] {
  const keys = [...previous];
  for (const part of raw.split(",").map((key) => key.trim()).filter(Boolean)) {
    if (/^(rps|inflight)=/.test(part) && keys.length > previous.length) keys[keys.length - 1] += `,${part}`;
    else keys.push(part);
  }
  return keys;
}
