/**
 * A purge reaches every replica (`--redis-url`): the replica that was asked purges Redis and its own tiers,
 * then publishes the filter; every other replica purges its memory and disk tiers when it hears it. A replica
 * that is cut off from Redis at that moment misses the notice (its tiers keep the answers until they expire):
 * the admin's answer says how many each tier of the asked replica removed.
 */
import type { Logger } from "../observe/log.ts";
import type { RedisLink } from "../redis/link.ts";
import type { PurgeFilter } from "./disk.ts";

/** Tells the other replicas of a purge. */
export interface PurgeNotices {
  send(filter: PurgeFilter): Promise<void>;
}

/** One replica alone: there is nobody to tell. */
export const localPurgeNotice: PurgeNotices = { send: () => Promise.resolve() };

export class PurgeNotice implements PurgeNotices {
  readonly #self = crypto.randomUUID();

  private constructor(private readonly link: RedisLink) {}

  static listen(
    link: RedisLink,
    purge: (filter: PurgeFilter) => Promise<unknown>,
    log: Logger,
  ): PurgeNotice {
    const notice = new PurgeNotice(link);
    // Subscribed as soon as Redis can be reached, and again after every reconnect.
    link.listen(link.key("purge"), (message: string) => {
      const { from, filter } = parseNotice(message) ?? {};
      if (!filter || from === notice.#self) return;
      purge(filter).then(
        (purged) => log.info("cache purged at another replica's request", { purged }),
        (error) => log.warn("cache purge asked by another replica failed", { error: String(error) }),
      );
    });
    return notice;
  }

  async send(filter: PurgeFilter): Promise<void> {
    const message = JSON.stringify({ from: this.#self, filter });
    await this.link.call("purge", (c) => c.publish(this.link.key("purge"), message));
  }
}

function parseNotice(message: string): { from: string; filter: PurgeFilter } | undefined {
  try {
    const value = JSON.parse(message);
    const filter = value?.filter;
    const valid = filter && (filter.all === true || typeof filter.model === "string" ||
      typeof filter.key === "string");
    return valid && typeof value.from === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}
