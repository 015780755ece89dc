/**
 * The shared answer tier (`--redis-url`): answers as Redis strings (the encoded CachedAnswer) with a `PX` TTL,
 * so Redis expires them itself and its `maxmemory` bounds them. Names carry only the cache key, a SHA-256 that
 * already hides the conversation and the client's credential. Every call may throw RedisUnavailable: the
 * caller goes on with its other tiers.
 */
import { asArgument, type RedisLink } from "../redis/link.ts";
import { type CachedAnswer, decodeAnswer, encodeAnswer } from "./entry.ts";
import type { PurgeFilter } from "./disk.ts";

/** Where answers are kept: the local disk tier and the shared Redis tier both are one. */
export interface AnswerStore {
  get(key: string): Promise<CachedAnswer | undefined>;
  set(key: string, answer: CachedAnswer): Promise<void>;
  /** Removes the answers `filter` names; returns how many. */
  purge(filter: PurgeFilter): Promise<number>;
}

const SCAN_BATCH = 500;

export class RedisAnswers implements AnswerStore {
  constructor(private readonly link: RedisLink) {}

  async get(key: string): Promise<CachedAnswer | undefined> {
    const bytes = await this.link.call("answers", (_, raw) => raw.get(this.#name(key)));
    const answer = bytes ? decodeAnswer(new Uint8Array(bytes as Uint8Array<ArrayBuffer>)) : undefined;
    return answer && answer.expiresAt > Date.now() ? answer : undefined;
  }

  async set(key: string, answer: CachedAnswer): Promise<void> {
    const ttl = Math.floor(answer.expiresAt - Date.now());
    if (ttl <= 0) return;
    const value = asArgument(encodeAnswer(answer));
    await this.link.call("answers", (client) => client.set(this.#name(key), value, { PX: ttl }));
  }

  async purge(filter: PurgeFilter): Promise<number> {
    if ("key" in filter) {
      return await this.link.call("purge", (client) => client.unlink(this.#name(filter.key)));
    }
    let purged = 0;
    const pattern = `${this.link.key("answer")}:*`;
    // A purge may walk many keys: it runs on the blocking connection, where no deadline applies.
    const client = await this.link.blocking();
    for await (const names of client.scanIterator({ MATCH: pattern, COUNT: SCAN_BATCH })) {
      let doomed = names;
      if ("model" in filter && names.length) {
        const values = await this.link.bytes.mGet(names).catch(() => []);
        doomed = names.filter((_, i) => {
          const value = values[i] as Uint8Array<ArrayBuffer> | null;
          return value && decodeAnswer(new Uint8Array(value))?.model === filter.model;
        });
      }
      if (doomed.length) purged += await client.unlink(doomed);
    }
    return purged;
  }

  #name(key: string): string {
    return this.link.key("answer", key);
  }
}
