/**
 * Async jobs shared by the fleet (`--redis-url`): a job accepted by any replica is run by one, and its result
 * is seen from every replica.
 *
 * Layout (under the fleet's prefix; `<id>` is the SHA-256 of the tenant and the fingerprint, so names hold
 * neither):
 * - `job:<id>`: the job (its request's digest, state, creation time); no TTL until done, then the result's;
 * - `jobreq:<id>`: its request until it is done, sealed with `--redis-secret` when one is set; no TTL;
 * - `jobs`: a stream of job ids with the consumer group `workers`: a replica reads new ids, and claims ids
 *   another replica took and stopped heart-beating for `CLAIM_IDLE_MS` (it died mid-job): nothing is lost;
 * - `result:<id>`: the 2xx answer, for `--async-result-ttl`; `jobfail:<id>`: a failed job's answer, taken by
 *   the next poll (GETDEL) and otherwise gone after ten minutes at most.
 * Creating a job is one Lua script (record + request + stream entry), so two submissions make one job.
 * Execution is at least once, as with the local store.
 *
 * A client credential the job must send upstream is kept only sealed: without `--redis-secret` such a job is
 * refused at submission (never run locally instead). While Redis is unreachable, submissions get a 503 to retry.
 */
import { decodeAnswer, encodeAnswer } from "../cache/entry.ts";
import { BridgeError } from "../core/errors.ts";
import type { ProxyRequest } from "../core/request.ts";
import { Semaphore } from "../core/semaphore.ts";
import { settledWithin, sleep } from "../core/time.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import {
  asArgument,
  BACKGROUND_DEADLINE_MS,
  type BytesClient,
  type Client,
  type RedisLink,
  RedisUnavailable,
} from "../redis/link.ts";
import type { UpstreamClient } from "../upstream/client.ts";
import {
  carriesCredential,
  executeJob,
  FAILURE_KEPT_MS,
  type JobStore,
  type StoredRequest,
  storedRequest,
  type Submission,
} from "./job_request.ts";
import { JobSeal } from "./job_seal.ts";

/** A job whose replica stopped heart-beating this long is claimed by another. */
export const CLAIM_IDLE_MS = 5000;
const HEARTBEAT_MS = 1000;
const BLOCK_MS = 1000;
const GROUP = "workers";

const CREATE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'id', ARGV[3])
return 1`;

interface JobRecord {
  digest: string;
  state: "pending" | "running" | "done";
  createdAt: number;
}

export interface RedisJobSettings {
  resultTtlMs: number;
  concurrency: number;
  /** Keep the client's credential headers with a job (they are passed upstream: no shared mode, no access keys). */
  keepCredentials: boolean;
  /** `--redis-secret`. */
  secret?: string;
}

export class RedisJobs implements JobStore {
  readonly #consumer = crypto.randomUUID();
  readonly #slots: Semaphore;
  readonly #runs = new Set<Promise<void>>();
  #closed = false;

  private constructor(
    private readonly link: RedisLink,
    private readonly seal: JobSeal | undefined,
    private readonly settings: RedisJobSettings,
    private readonly upstream: UpstreamClient,
    private readonly metrics: BridgeMetrics,
    private readonly log: Logger,
  ) {
    this.#slots = new Semaphore(settings.concurrency);
    this.#work(); // runs until close; it catches its own failures
  }

  static async open(
    link: RedisLink,
    settings: RedisJobSettings,
    upstream: UpstreamClient,
    metrics: BridgeMetrics,
    log: Logger,
  ): Promise<RedisJobs> {
    const seal = settings.secret ? await JobSeal.fromSecret(settings.secret) : undefined;
    return new RedisJobs(link, seal, settings, upstream, metrics, log);
  }

  async submit(fingerprint: string, digest: string, request: ProxyRequest): Promise<Submission> {
    const id = await jobId(request.tenant ?? "", fingerprint);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const record = await this.#record(id);
        // Looked at after the read: a job that failed meanwhile kept its failure before its record went.
        const failed = await this.#call((_, raw) => raw.getDel(this.#name("jobfail", id)));
        if (failed) return { kind: "done", answer: decodeAnswer(new Uint8Array(failed))! };
        const result = record?.state === "done"
          ? await this.#call((_, raw) => raw.get(this.#name("result", id)))
          : undefined;
        if (record && (record.state !== "done" || result)) {
          if (record.digest !== digest) return { kind: "conflict" };
          const answer = result ? decodeAnswer(new Uint8Array(result)) : undefined;
          return answer ? { kind: "done", answer } : { kind: "waiting" };
        }
        if (await this.#create(id, digest, request)) {
          this.metrics.asyncJobs.inc({ state: "accepted" });
          return { kind: "accepted" };
        }
      }
      return { kind: "waiting" };
    } catch (error) {
      if (error instanceof RedisUnavailable) throw new JobsUnavailable();
      throw error;
    }
  }

  /**
   * Stops taking jobs and waits (at most `withinMs`) for the jobs under way to write what they have; a job still
   * waiting for its upstream stays pending in Redis and another replica claims it. The loop that takes jobs is
   * not waited for: it may sit in a blocking read that a frozen Redis never answers (closing the link ends it).
   */
  async close(withinMs = 5000): Promise<void> {
    this.#closed = true;
    await settledWithin([...this.#runs], withinMs);
  }

  async #create(id: string, digest: string, request: ProxyRequest): Promise<boolean> {
    const stored = storedRequest(request, this.settings.keepCredentials);
    if (!this.seal && carriesCredential(stored)) throw new CredentialNeedsSecret();
    const record: JobRecord = { digest, state: "pending", createdAt: Date.now() };
    const plain = new TextEncoder().encode(JSON.stringify({
      ...stored,
      body: stored.body && new TextDecoder().decode(stored.body),
    }));
    const kept = this.seal ? await this.seal.seal(plain, id) : plain;
    const created = await this.#call((c) =>
      c.eval(CREATE_SCRIPT, {
        keys: [this.#name("job", id), this.#name("jobreq", id), this.#name("jobs")],
        arguments: [JSON.stringify(record), asArgument(kept), id],
      })
    );
    return created === 1;
  }

  async #record(id: string): Promise<JobRecord | undefined> {
    const text = await this.#call((c) => c.get(this.#name("job", id)));
    try {
      const record = text ? JSON.parse(text) : undefined;
      return typeof record?.digest === "string" && ["pending", "running", "done"].includes(record.state)
        ? record as JobRecord
        : undefined;
    } catch {
      return undefined; // not a record this bridge wrote
    }
  }

  /** Takes jobs while the bridge runs: claims of dead replicas' jobs first, then new ones. */
  async #work(): Promise<void> {
    const stream = this.#name("jobs");
    let grouped = false;
    while (!this.#closed) {
      try {
        if (!grouped) {
          await this.#call(
            (c) =>
              c.xGroupCreate(stream, GROUP, "0", { MKSTREAM: true }).catch((error) => {
                if (!String(error).includes("BUSYGROUP")) throw error;
              }),
          );
          grouped = true;
        }
        // The fleet's jobs not finished yet: entries leave the stream when their job ends.
        this.metrics.asyncJobsPending.set(await this.#call((c) => c.xLen(stream)));
        await this.#slots.acquire();
        const entry = await this.#claim(stream) ?? await this.#readNew(stream);
        if (!entry) {
          this.#slots.release();
          continue;
        }
        const run = this.#run(stream, entry.id, entry.jobId).finally(() => {
          this.#slots.release();
          this.#runs.delete(run);
        });
        this.#runs.add(run);
      } catch {
        // Redis is down: the jobs wait in it; this replica looks again soon.
        if (!this.#closed) await sleep(BLOCK_MS);
      }
    }
  }

  async #claim(stream: string): Promise<{ id: string; jobId: string } | undefined> {
    const claimed = await this.#call(
      (c) => c.xAutoClaim(stream, GROUP, this.#consumer, CLAIM_IDLE_MS, "0-0", { COUNT: 1 }),
    );
    const message = claimed.messages.find((entry) => entry);
    if (!message) return undefined;
    this.log.info("async job claimed from a replica that stopped", { job: message.message.id?.slice(0, 12) });
    return { id: message.id, jobId: message.message.id };
  }

  async #readNew(stream: string): Promise<{ id: string; jobId: string } | undefined> {
    // A blocking read waits on its own connection: the commands of requests never queue behind it.
    const read = await (await this.link.blocking()).xReadGroup(GROUP, this.#consumer, {
      key: stream,
      id: ">",
    }, {
      COUNT: 1,
      BLOCK: BLOCK_MS,
    });
    const message = (read as { messages: { id: string; message: Record<string, string> }[] }[] | null)?.[0]
      ?.messages[0];
    return message ? { id: message.id, jobId: message.message.id } : undefined;
  }

  async #run(stream: string, entryId: string, id: string): Promise<void> {
    const heartbeat = setInterval(() => {
      this.#call(
        (c) => c.xClaimJustId(stream, GROUP, this.#consumer, 0, entryId),
      )
        .catch(() => {});
    }, HEARTBEAT_MS);
    try {
      const record = await this.#record(id);
      const request = record && record.state !== "done" ? await this.#request(id) : undefined;
      // Done already, or its request is gone or does not open (another secret, tampered): the entry is
      // dropped and so is the record, so the next submission makes a new job instead of waiting forever.
      if (!record || record.state === "done") return await this.#finish(stream, entryId, []);
      if (!request) return await this.#finish(stream, entryId, [(c) => c.del(this.#name("job", id))], id);
      await this.#call(
        (c) => c.set(this.#name("job", id), JSON.stringify({ ...record, state: "running" })),
      );
      const answer = await executeJob(request, this.upstream, this.settings.resultTtlMs, this.log);
      const ttl = this.settings.resultTtlMs;
      if (answer.status >= 200 && answer.status < 300) {
        const done: JobRecord = { ...record, state: "done" };
        await this.#finish(stream, entryId, [
          (c) => c.set(this.#name("result", id), asArgument(encodeAnswer(answer)), { PX: ttl }),
          (c) => c.set(this.#name("job", id), JSON.stringify(done), { PX: ttl }),
        ], id);
        this.metrics.asyncJobs.inc({ state: "completed" });
      } else {
        // Kept before the record goes: a poll in between finds the failure, never a missing job (a new one).
        const keep = Math.min(ttl, FAILURE_KEPT_MS);
        await this.#finish(stream, entryId, [
          (c) => c.set(this.#name("jobfail", id), asArgument(encodeAnswer(answer)), { PX: keep }),
          (c) => c.del(this.#name("job", id)),
        ], id);
        this.metrics.asyncJobs.inc({ state: "failed" });
      }
    } catch (error) {
      // Redis failed mid-job: the entry stays pending and another replica (or this one) claims it later.
      this.log.warn("async job could not be finished in redis; it will run again", { error: String(error) });
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Writes a job's outcome, lets its request go and takes it off the stream, in one transaction. */
  async #finish(
    stream: string,
    entryId: string,
    writes: ((c: ReturnType<RedisLink["client"]["multi"]>) => unknown)[],
    id?: string,
  ): Promise<void> {
    await this.#call(async (c) => {
      const multi = c.multi();
      for (const write of writes) write(multi);
      if (id) multi.del(this.#name("jobreq", id));
      multi.xAck(stream, GROUP, entryId).xDel(stream, entryId);
      await multi.exec();
    });
  }

  async #request(id: string): Promise<StoredRequest | undefined> {
    const kept = await this.#call((_, raw) => raw.get(this.#name("jobreq", id)));
    if (!kept) return undefined;
    const bytes = new Uint8Array(kept);
    const plain = this.seal ? await this.seal.open(bytes, id) : bytes;
    if (!plain) {
      this.log.warn(
        "an async job's request does not open with this --redis-secret (another secret, or never sealed): dropped",
        {
          job: id.slice(0, 12),
        },
      );
      return undefined;
    }
    try {
      const stored = JSON.parse(new TextDecoder().decode(plain));
      const valid = typeof stored?.method === "string" && typeof stored.path === "string" &&
        typeof stored.search === "string" && Array.isArray(stored.headers) &&
        (stored.body === null || typeof stored.body === "string");
      if (!valid) return undefined;
      return { ...stored, body: stored.body === null ? null : new TextEncoder().encode(stored.body) };
    } catch {
      return undefined;
    }
  }

  /**
   * A job store command: off the request's hot path, so it may wait up to BACKGROUND_DEADLINE_MS (a 202 a little
   * later beats a 503 because the first command of a fresh process compiled slowly).
   */
  #call<T>(command: (client: Client, bytes: BytesClient) => Promise<T>): Promise<T> {
    return this.link.call("jobs", command, BACKGROUND_DEADLINE_MS);
  }

  #name(...parts: string[]): string {
    return this.link.key(...parts);
  }
}

async function jobId(tenant: string, fingerprint: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`${tenant}\u0000${fingerprint}`),
  );
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The job would have to keep a client credential in Redis, and no `--redis-secret` is there to seal it. */
export class CredentialNeedsSecret extends BridgeError {
  constructor() {
    super(
      503,
      "server_error",
      "async_needs_redis_secret",
      "This bridge shares async jobs through Redis and has no --redis-secret to keep your credential sealed " +
        "there, so it does not take jobs that carry one. Send the request without request_fingerprint, or ask " +
        "the operator to set BRIDGE_REDIS_SECRET.",
    );
  }
}

/** Redis is unreachable: a job cannot be taken (nor looked up) now. */
export class JobsUnavailable extends BridgeError {
  constructor() {
    super(
      503,
      "server_error",
      "async_store_unavailable",
      "Async jobs are kept in the shared store, which cannot be reached right now: retry shortly.",
      { "retry-after": "1" },
    );
  }
}
