/**
 * The upstream flags' values: `--ollama` (the default pool: one URL or several, each with an optional `#weight`)
 * and `--route <glob>=<url>[,<url>…]` (a pool for the models the glob matches).
 */
import { InvalidArgumentError } from "commander";
import type { MemberSettings, RouteSettings } from "./settings.ts";
import { upstreamUrl } from "./values.ts";

/** The highest `#weight` a member may have. */
const MAX_WEIGHT = 1000;

/**
 * Collects the repeatable `--ollama`: each value holds one URL or several separated by commas. The first value
 * given replaces the default (which commander hands over as a plain string, never as a list).
 */
export function memberList(raw: string, previous?: unknown): MemberSettings[] {
  const members = [...(Array.isArray(previous) ? previous as MemberSettings[] : []), ...poolMembers(raw)];
  const urls = members.map((member) => member.url.href);
  const twice = urls.find((url, index) => urls.indexOf(url) !== index);
  if (twice) throw new InvalidArgumentError(`The upstream ${twice} is listed twice.`);
  return members;
}

/** Collects the repeatable `--route`; one value (as `BRIDGE_ROUTE` does) may hold several separated by `;`. */
export function routeList(raw: string, previous: RouteSettings[] = []): RouteSettings[] {
  const routes = [...previous];
  for (const part of raw.split(";").map((text) => text.trim()).filter(Boolean)) {
    const equals = part.indexOf("=");
    const models = part.slice(0, equals).trim();
    if (equals < 1 || !/^[\x21-\x7e]{1,200}$/.test(models)) {
      throw new InvalidArgumentError(
        "Expected <model-glob>=<url>[,<url>…], such as 'llama3*=http://10.0.0.2:11434' (';' between routes).",
      );
    }
    routes.push({ models, name: models, members: memberList(part.slice(equals + 1)) });
  }
  return routes;
}

/** The longest model name a route's glob is matched against; a longer one goes to the default pool. */
export const LONGEST_ROUTED_MODEL = 512;

/**
 * Whether a model name matches a route's glob: `*` any run of characters, `?` one; the whole name, any case.
 * The model comes from the client: no regular expression (`a*a*a*b` backtracks without bound on a long name),
 * but a wildcard walk that keeps one way back (the last `*`), and only for names up to LONGEST_ROUTED_MODEL.
 */
export function globMatcher(glob: string): (model: string) => boolean {
  const pattern = glob.toLowerCase();
  return (name) => {
    if (name.length > LONGEST_ROUTED_MODEL) return false;
    const model = name.toLowerCase();
    let p = 0;
    let m = 0;
    let star = -1;
    let resume = 0;
    while (m < model.length) {
      if (p < pattern.length && (pattern[p] === "?" || pattern[p] === model[m])) {
        p++;
        m++;
      } else if (p < pattern.length && pattern[p] === "*") {
        star = p++;
        resume = m;
      } else if (star >= 0) {
        p = star + 1;
        m = ++resume;
      } else return false;
    }
    while (pattern[p] === "*") p++;
    return p === pattern.length;
  };
}

function poolMembers(raw: string): MemberSettings[] {
  const parts = raw.split(",").map((text) => text.trim()).filter(Boolean);
  if (!parts.length) {
    throw new InvalidArgumentError("Expected an http(s) URL, such as http://127.0.0.1:11434.");
  }
  return parts.map((part) => {
    const match = /^(.*?)(?:#(\d{1,4}))?$/s.exec(part)!;
    const weight = match[2] === undefined ? 1 : Number(match[2]);
    if (weight < 1 || weight > MAX_WEIGHT) {
      throw new InvalidArgumentError(
        `Expected a weight from 1 to ${MAX_WEIGHT} after '#', such as ${match[1]}#2.`,
      );
    }
    return { ...withoutUserinfo(upstreamUrl(match[1])), weight };
  });
}

/**
 * The upstream URL without its `user:password@` (never logged, never sent in the URL), and that userinfo as the
 * `Authorization: Basic …` value the upstream client sends when no other credential applies.
 */
function withoutUserinfo(url: URL): { url: URL; basicAuth?: string } {
  if (!url.username && !url.password) return { url };
  const userinfo = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  const bytes = Uint8Array.from(userinfo, (char) => char.charCodeAt(0) & 0xff);
  const bare = new URL(url);
  bare.username = "";
  bare.password = "";
  return { url: bare, basicAuth: `Basic ${btoa(String.fromCharCode(...bytes))}` };
}
