/**
 * Shared (enterprise) mode's keys: the pool of upstream API keys the bridge holds, and the access keys its
 * clients must present. A key is never logged or exported: it is named by its fingerprint, the first 8 hex
 * digits of its SHA-256.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import type { Clock } from "../core/time.ts";
import { retryAfterMs } from "./retry.ts";
import { SecretMask } from "./secret_mask.ts";

export function keyFingerprint(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

/** Keys from a file: one per line; blank lines and lines starting with `#` are skipped. */
export function readKeyLines(text: string): string[] {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
}

interface PooledKey {
  readonly value: string;
  readonly fingerprint: string;
  /** The key's whole SHA-256 (hex): how replicas name it to each other, never the key itself. */
  readonly identity: string;
  /** Taken out for good (until a reload): the upstream refused the key itself. */
  removed: boolean;
  /** Not used before this time (ms, monotonic): the upstream asked it to slow down. */
  coolUntil: number;
}

/** What an upstream answer says about the key it was sent with. */
export type KeyVerdict = "ok" | "removed" | "cooling";

/** How long a key rests after a 429 that named no time. */
const DEFAULT_COOLDOWN_MS = 10_000;

export class KeyPool {
  #keys: PooledKey[] = [];
  #next = 0;
  /** Masks every pooled key in answers that go to clients. */
  mask = new SecretMask([]);
  /** Told of every key taken out or cooled down here, to tell the other replicas (`--redis-url`). */
  onVerdict?: (identity: string, verdict: "removed" | "cooling", forMs: number) => void;

  constructor(
    keys: readonly string[],
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly metrics: BridgeMetrics,
  ) {
    this.replace(keys);
  }

  /** Puts a new set of keys in place (a reload); keys that stay keep their state. */
  replace(keys: readonly string[]): void {
    const old = new Map(this.#keys.map((key) => [key.value, key]));
    this.#keys = [...new Set(keys)].map((value) =>
      old.get(value) ?? {
        value,
        fingerprint: keyFingerprint(value),
        identity: createHash("sha256").update(value).digest("hex"),
        removed: false,
        coolUntil: 0,
      }
    );
    this.#next = 0;
    this.mask = new SecretMask(this.#keys.map((key) => key.value));
    this.#publish();
  }

  get size(): number {
    return this.#keys.length;
  }

  get healthy(): number {
    const now = this.clock.now();
    return this.#keys.filter((key) => !key.removed && key.coolUntil <= now).length;
  }

  /** The next healthy key, round-robin; undefined when none is. */
  pick(): PooledKey | undefined {
    const now = this.clock.now();
    for (let i = 0; i < this.#keys.length; i++) {
      const key = this.#keys[(this.#next + i) % this.#keys.length];
      if (!key.removed && key.coolUntil <= now) {
        this.#next = (this.#next + i + 1) % this.#keys.length;
        return key;
      }
    }
    return undefined;
  }

  /**
   * Judges the key by the upstream's answer: 401, 403, 402 or a 429 for `insufficient_quota` take it out; any
   * other 429 rests it for its Retry-After. `body` is the answer's text for 402 and 429.
   */
  judge(key: PooledKey, status: number, headers: Headers, body = ""): KeyVerdict {
    this.metrics.upstreamKeyRequests.inc({ key_fp: key.fingerprint, status: String(status) });
    const outOfQuota = status === 402 || (status === 429 && body.includes("insufficient_quota"));
    if (status === 401 || status === 403 || outOfQuota) {
      if (!key.removed) {
        key.removed = true;
        this.log.warn("upstream refused an API key: taken out of the pool", {
          key_fp: key.fingerprint,
          status,
          healthy: this.healthy,
        });
        this.#publish();
        this.onVerdict?.(key.identity, "removed", 0);
      }
      return "removed";
    }
    if (status === 429) {
      const forMs = retryAfterMs(headers) ?? DEFAULT_COOLDOWN_MS;
      key.coolUntil = this.clock.now() + forMs;
      this.#publish();
      this.onVerdict?.(key.identity, "cooling", forMs);
      return "cooling";
    }
    return "ok";
  }

  /** What another replica found of a key (named by its identity): taken out, or cooling for `forMs` more. */
  applyShared(identity: string, verdict: "removed" | "cooling", forMs: number): void {
    const key = this.#keys.find((candidate) => candidate.identity === identity);
    if (!key) return;
    if (verdict === "removed") key.removed = true;
    else key.coolUntil = Math.max(key.coolUntil, this.clock.now() + Math.max(0, forMs));
    this.#publish();
  }

  #publish(): void {
    this.metrics.upstreamKeysHealthy.set(this.healthy);
  }
}

/** A tenant's own limits, from its access key: `rps=` requests a second, `inflight=` at the upstream at once. */
export interface TenantLimits {
  readonly rps?: number;
  readonly inflight?: number;
}

/** A client access key and the tenant it names. */
export interface AccessKey {
  readonly label: string;
  readonly key: string;
  readonly limits?: TenantLimits;
}

const LIMITS = /:((?:rps|inflight)=\d+(?:,(?:rps|inflight)=\d+)*)$/;

/**
 * Lines `label:key`, `label:key:rps=5,inflight=2` or `key` (the label is then the key's fingerprint). A limit
 * that is not a positive whole number stops the start (or the reload) with a message naming the label.
 */
export function parseAccessKeys(lines: readonly string[]): AccessKey[] {
  return lines.map((raw) => {
    const limitsText = LIMITS.exec(raw)?.[1];
    const line = limitsText ? raw.slice(0, raw.length - limitsText.length - 1) : raw;
    const colon = line.indexOf(":");
    const label = colon > 0 ? line.slice(0, colon).trim() : keyFingerprint(line);
    const key = colon > 0 ? line.slice(colon + 1).trim() : line;
    return { label, key, limits: limitsText ? parseLimits(label, limitsText) : undefined };
  }).filter((entry) => entry.key.length > 0);
}

function parseLimits(label: string, text: string): TenantLimits {
  const limits: Record<string, number> = {};
  for (const item of text.split(",")) {
    const [name, value] = item.split("=");
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1 || number > 1_000_000) {
      throw new Error(
        `access key '${label}': ${name} must be a whole number from 1 to 1000000, not '${value}'`,
      );
    }
    limits[name] = number;
  }
  return limits;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

export class AccessKeys {
  #entries: { label: string; digest: Uint8Array }[] = [];
  #limits = new Map<string, TenantLimits>();

  constructor(keys: readonly AccessKey[]) {
    this.replace(keys);
  }

  replace(keys: readonly AccessKey[]): void {
    this.#entries = keys.map(({ label, key }) => ({ label, digest: digest(key) }));
    this.#limits = new Map(keys.filter((key) => key.limits).map((key) => [key.label, key.limits!]));
  }

  /** The tenant's own limits, if its access key carries any. */
  limitsOf(label: string): TenantLimits | undefined {
    return this.#limits.get(label);
  }

  /** Whether any tenant has an `inflight=` limit (then requests go through the admission queue). */
  get hasInflightLimits(): boolean {
    for (const limits of this.#limits.values()) if (limits.inflight) return true;
    return false;
  }

  get size(): number {
    return this.#entries.length;
  }

  /**
   * The tenant label of the presented key, or undefined. Compares SHA-256 digests in constant time, against
   * every key (no early exit), so timing tells neither the key nor which one matched.
   */
  identify(presented: string | undefined): string | undefined {
    if (!presented) return undefined;
    const candidate = digest(presented);
    let label: string | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(candidate, entry.digest) && label === undefined) label = entry.label;
    }
    return label;
  }
}

/** The credential a client presented: `Authorization: Bearer …` or `x-api-key`. */
export function presentedKey(headers: Headers): string | undefined {
  const authorization = headers.get("authorization");
  if (authorization?.toLowerCase().startsWith("bearer ")) return authorization.slice(7).trim();
  return headers.get("x-api-key") ?? undefined;
}
