/**
 * The logger: one line per event, as text or JSON, with secrets masked. Lines are batched into one write per
 * few milliseconds so a busy proxy does not pay a system call per request.
 */
import type { LogFormat } from "../config/index.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly debugEnabled: boolean;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Writes out any buffered lines now. */
  flush(): void;
  /** Masks these literal values (API keys) wherever they would appear from now on. */
  addSecrets(values: readonly (string | undefined)[]): void;
}

export interface Sink {
  write(text: string): void;
}

/** Header names whose values are secrets: never logged. */
const SECRET_HEADERS = new Set([
  "authorization",
  "proxy-authorization",
  "x-api-key",
  "api-key",
  "cookie",
  "set-cookie",
]);

/** A header list with secret values replaced by `***`, for debug logs. */
export function maskedHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => out[name] = SECRET_HEADERS.has(name) ? "***" : value);
  return out;
}

const encoder = new TextEncoder();
const stdoutSink: Sink = {
  write(text) {
    const bytes = encoder.encode(text);
    let written = 0;
    while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
  },
};

/** The current time in ISO form, formatted once per millisecond however many lines share it. */
let stampedAt = 0;
let stamp = "";
function timestamp(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = new Date(now).toISOString();
  }
  return stamp;
}

/** Control characters (a client's `%0a` in a path) would start a forged log line: they are escaped. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;
const escapeControl = (char: string) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`;

/** Values of query parameters that commonly carry credentials (`?api_key=`, `?key=`, `?token=` …). */
const QUERY_SECRET =
  /([?&](?:api[-_]?key|key|token|access[-_]?token|secret|password|auth|sig|signature)=)[^&\s"]+/gi;

function formatText(level: LogLevel, message: string, fields: LogFields | undefined): string {
  let line = `${timestamp()} ${level.toUpperCase().padEnd(5)} ${message.replace(CONTROL, escapeControl)}`;
  if (fields) {
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      const text = typeof value === "string" ? value : JSON.stringify(value);
      line += ` ${key}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
    }
  }
  return line + "\n";
}

function formatJson(level: LogLevel, message: string, fields: LogFields | undefined): string {
  return JSON.stringify({ time: timestamp(), level, msg: message, ...fields }) + "\n";
}

export interface LoggerOptions {
  format?: LogFormat;
  debug?: boolean;
  sink?: Sink;
  /** Literal secret values (API keys) to mask wherever they appear. */
  secrets?: readonly string[];
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format === "json" ? formatJson : formatText;
  const sink = options.sink ?? stdoutSink;
  const secrets = new Set<string>();
  const addSecrets = (values: readonly (string | undefined)[]) => {
    for (const value of values) if (value && value.length >= 4) secrets.add(value);
  };
  addSecrets(options.secrets ?? []);
  let buffer = "";
  let timer: ReturnType<typeof setTimeout> | undefined;

  function flush(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (!buffer) return;
    const text = buffer;
    buffer = "";
    sink.write(text);
  }

  function emit(level: LogLevel, message: string, fields?: LogFields): void {
    let line = format(level, message, fields).replace(QUERY_SECRET, "$1***");
    for (const secret of secrets) line = line.replaceAll(secret, "***");
    buffer += line;
    if (level === "warn" || level === "error" || buffer.length > 64 * 1024) return flush();
    if (timer === undefined) {
      timer = setTimeout(flush, 20);
      Deno.unrefTimer(timer);
    }
  }

  return {
    debugEnabled: Boolean(options.debug),
    debug: (message, fields) => options.debug && emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
    flush,
    addSecrets,
  };
}
