/**
 * Key pool health shared by the fleet (shared mode with `--redis-url`): a key one replica takes out (401, 403,
 * out of quota) or cools down (429) is taken out or cooled down on every replica. Each verdict is kept in one
 * Redis hash with the time it holds until (a replica that starts later reads them; a verdict past its time is
 * ignored) and published for the replicas running now. Keys are named by their SHA-256, never in clear. When
 * Redis is down each replica judges its keys alone.
 */
import { BACKGROUND_DEADLINE_MS, type RedisLink } from "../redis/link.ts";
import type { KeyPool } from "./keys.ts";

/** How long a key taken out stays out for replicas that start later (a reload of the key file clears it here). */
const REMOVED_KEPT_MS = 24 * 3600_000;

type Verdict = "removed" | "cooling";

export function shareKeyCooldowns(link: RedisLink, pool: KeyPool): void {
  const channel = link.key("keycool");
  pool.onVerdict = (identity, verdict, forMs) => {
    const ttl = verdict === "removed" ? REMOVED_KEPT_MS : Math.max(1, Math.ceil(forMs));
    const until = Date.now() + ttl;
    const message = `${identity} ${verdict} ${until}`;
    link.call("keys", async (c) => {
      await Promise.all([
        c.hSet(channel, identity, message),
        c.pExpire(channel, REMOVED_KEPT_MS),
        c.publish(channel, message),
      ]);
    }, BACKGROUND_DEADLINE_MS).catch(() => {});
  };
  const apply = (message: string) => {
    const [identity, verdict, until] = message.split(" ");
    if (!/^[0-9a-f]{64}$/.test(identity) || (verdict !== "removed" && verdict !== "cooling")) return;
    if (!(Number(until) > Date.now())) return; // it no longer holds
    pool.applyShared(identity, verdict as Verdict, Number(until) - Date.now());
  };
  // Verdicts made while this replica was not listening: before it started or subscribed, or while Redis was away.
  const catchUp = () => {
    link.call("keys", (c) => c.hGetAll(channel), BACKGROUND_DEADLINE_MS)
      .then((verdicts) => Object.values(verdicts).forEach(apply), () => {});
  };
  link.listen(channel, apply, catchUp);
  link.onUp(catchUp);
}
