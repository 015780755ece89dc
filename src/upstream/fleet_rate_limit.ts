/**
 * The fleet's rate limit (`--redis-url` with `--rate-limit`): one GCRA bucket in Redis for every replica, run as
 * a Lua script on the server's own clock (`TIME`), so it is exact under races and whatever the replicas' clocks
 * say. It allows what the local token bucket allows: `rate` a second after a burst of `rate`. When Redis is down
 * or slow, each replica falls back to its own bucket of `rate ÷ --replicas-hint`.
 */
import { type Cancellation, sleep } from "../core/time.ts";
import { type RedisLink, RedisUnavailable } from "../redis/link.ts";
import type { RateLimiter } from "./rate_limit.ts";

/** Takes a token if one is due, else answers how many ms until one is (and takes nothing). */
const GCRA_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - burst * interval
if allowed_at > now then return tostring(math.ceil(allowed_at - now)) end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(burst * interval) + 1000)
return '0'`;

export function fleetRateLimiter(link: RedisLink, rate: number, alone: RateLimiter): RateLimiter {
  const script = {
    keys: [link.key("ratelimit")],
    arguments: [String(1000 / rate), String(Math.max(1, rate))],
  };

  async function tryTake(): Promise<number> {
    try {
      const wait = await link.call("ratelimit", (c) => c.eval(GCRA_SCRIPT, script));
      return Number(wait) || 0;
    } catch (error) {
      if (!(error instanceof RedisUnavailable)) throw error;
      return alone.tryTake();
    }
  }

  async function take(cancellation?: Cancellation): Promise<void> {
    for (let wait = await tryTake(); wait > 0; wait = await tryTake()) await sleep(wait, cancellation);
  }

  return { tryTake, take };
}
