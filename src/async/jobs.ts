/**
 * Async jobs (`request_fingerprint`): durable in Deno KV under `--cache-dir`, executed through a KV queue.
 *
 * Layout of `jobs.kv`:
 * - ["job", tenant, fingerprint]: the job — which request it is (a digest, to answer 409 to a different one), its
 *   state, and until it finishes the request itself;
 * - ["pending", tenant, fingerprint]: jobs not finished yet, re-enqueued at start-up (crash recovery);
 * - results, as cache entries (chunked when large) under the same names, kept for `--async-result-ttl`.
 * A job is created in one atomic commit with its queue message, so two submissions cannot make two jobs.
 * Execution is at least once: a job runs again if the bridge dies after the upstream answered and before the
 * result was stored.
 *
 * Only a successful (2xx) answer becomes a job's stored result. A failed one (an upstream 401, a 5xx, an
 * unreachable upstream) ends the job: its record, and with it any stored credential, is deleted, and the failure
 * is kept in memory for the next poll of the same job (the same tenant, so the same credential) and then
 * forgotten; a later submission makes a new job.
 */
import { DiskTier } from "../cache/disk.ts";
import { openPrivateKv } from "../cache/private_kv.ts";
import type { CachedAnswer } from "../cache/entry.ts";
import type { Logger } from "../observe/log.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import {
  executeJob,
  FAILURE_KEPT_MS,
  type JobStore,
  type StoredRequest,
  storedRequest,
  type Submission,
} from "./job_request.ts";
import type { ProxyRequest } from "../core/request.ts";
import type { UpstreamClient } from "../upstream/client.ts";
import { Semaphore } from "../core/semaphore.ts";
import { settledWithin } from "../core/time.ts";

export type JobState = "pending" | "running" | "done";

interface Job {
  digest: string;
  state: JobState;
  createdAt: number;
  /** Until the job is done: what to send upstream. */
  request?: StoredRequest;
}

interface QueueMessage {
  tenant: string;
  fingerprint: string;
}

export interface JobSettings {
  dir: string;
  resultTtlMs: number;
  concurrency: number;
  /**
   * Store the client's credential headers with a job: only when they are passed upstream (no shared mode, no
   * access keys). Otherwise they are the bridge's own secrets and never touch the disk.
   */
  keepCredentials?: boolean;
}

export class AsyncJobs implements JobStore {
  readonly #running = new Set<string>();
  /** Jobs under way in this process, for a graceful close. */
  readonly #runs = new Set<Promise<void>>();
  /** Jobs sent upstream at once: `--async-concurrency`. */
  readonly #slots: Semaphore;
  /** Failed jobs' answers, each delivered once to the next poll of the same job; bounded and short-lived. */
  readonly #failures = new Map<string, { answer: CachedAnswer; expiresAt: number }>();
  #closed = false;
  readonly #listening: Promise<void>;

  private constructor(
    private readonly kv: Deno.Kv,
    private readonly results: DiskTier,
    private readonly settings: JobSettings,
    private readonly upstream: UpstreamClient,
    private readonly metrics: BridgeMetrics,
    private readonly log: Logger,
  ) {
    this.#slots = new Semaphore(settings.concurrency);
    this.#listening = kv.listenQueue((message) => {
      const run = this.#run(message as QueueMessage);
      this.#runs.add(run);
      return run.finally(() => this.#runs.delete(run));
    });
  }

  static async open(
    settings: JobSettings,
    upstream: UpstreamClient,
    metrics: BridgeMetrics,
    log: Logger,
  ): Promise<AsyncJobs> {
    const kv = await openPrivateKv(settings.dir, "jobs.kv", log);
    const results = await DiskTier.open(kv, { maxEntries: 1_000_000 });
    const jobs = new AsyncJobs(kv, results, settings, upstream, metrics, log);
    await jobs.#resume();
    return jobs;
  }

  /** Submits (or polls) a job: the answer when done, else whether it was accepted or is still on its way. */
  async submit(fingerprint: string, digest: string, request: ProxyRequest): Promise<Submission> {
    const tenant = request.tenant ?? "";
    const key = ["job", tenant, fingerprint];
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await this.kv.get<Job>(key);
      // Looked at after the read: a job that failed meanwhile kept its failure before its record went.
      const failed = this.#takeFailure(tenant, fingerprint);
      if (failed) return { kind: "done", answer: failed };
      // A finished job whose result has expired is gone, whatever KV still holds (it sweeps only now and then).
      const answer = existing.value?.state === "done"
        ? await this.results.get(resultKey(tenant, fingerprint))
        : undefined;
      if (existing.value && (existing.value.state !== "done" || answer)) {
        if (existing.value.digest !== digest) return { kind: "conflict" };
        return answer ? { kind: "done", answer } : { kind: "waiting" };
      }
      const job: Job = {
        digest,
        state: "pending",
        createdAt: Date.now(),
        request: storedRequest(request, this.settings.keepCredentials ?? true),
      };
      const message: QueueMessage = { tenant, fingerprint };
      const created = await this.kv.atomic()
        .check(existing)
        .set(key, job)
        .set(["pending", tenant, fingerprint], true)
        .enqueue(message)
        .commit();
      if (created.ok) {
        this.metrics.asyncJobs.inc({ state: "accepted" });
        this.metrics.asyncJobsPending.inc();
        return { kind: "accepted" };
      }
      // Another submission of the same job won the race: read what it stored.
    }
    return { kind: "waiting" };
  }

  /**
   * Stops taking jobs and closes the store once the jobs under way have written what they have (at most
   * `withinMs`); a job still waiting for its upstream then stays pending and runs again at the next start.
   */
  async close(withinMs = 5000): Promise<void> {
    this.#closed = true;
    await settledWithin([...this.#runs], withinMs);
    this.kv.close();
    await this.#listening.catch(() => {});
  }

  /** Re-enqueues the jobs a previous run accepted and did not finish. */
  async #resume(): Promise<void> {
    let resumed = 0;
    for await (const entry of this.kv.list<boolean>({ prefix: ["pending"] })) {
      const [, tenant, fingerprint] = entry.key as [string, string, string];
      await this.kv.enqueue({ tenant, fingerprint } satisfies QueueMessage);
      resumed++;
    }
    this.metrics.asyncJobsPending.set(resumed);
    if (resumed) this.log.info("async jobs resumed", { jobs: resumed });
  }

  async #run({ tenant, fingerprint }: QueueMessage): Promise<void> {
    const name = `${tenant}/${fingerprint}`;
    if (this.#running.has(name) || this.#closed) return; // a duplicate delivery while it runs here
    this.#running.add(name);
    await this.#slots.acquire();
    try {
      const key = ["job", tenant, fingerprint];
      const entry = await this.kv.get<Job>(key);
      const job = entry.value;
      if (!job || job.state === "done" || !job.request) return;
      await this.kv.set(key, { ...job, state: "running" });
      const answer = await executeJob(job.request, this.upstream, this.settings.resultTtlMs, this.log);
      if (answer.status < 200 || answer.status >= 300) return await this.#fail(tenant, fingerprint, answer);
      await this.results.set(resultKey(tenant, fingerprint), answer);
      const expireIn = this.settings.resultTtlMs;
      const done = await this.kv.atomic()
        .set(key, { digest: job.digest, state: "done", createdAt: job.createdAt } satisfies Job, { expireIn })
        .delete(["pending", tenant, fingerprint])
        .commit();
      if (done.ok) {
        this.metrics.asyncJobs.inc({ state: answer.status < 400 ? "completed" : "failed" });
        this.metrics.asyncJobsPending.dec();
      }
    } finally {
      this.#running.delete(name);
      this.#slots.release();
    }
  }

  /** A failed job's answer, once: the first poll after the failure takes it. */
  #takeFailure(tenant: string, fingerprint: string): CachedAnswer | undefined {
    const name = resultKey(tenant, fingerprint);
    const failure = this.#failures.get(name);
    if (!failure) return undefined;
    this.#failures.delete(name);
    return failure.expiresAt > Date.now() ? failure.answer : undefined;
  }

  /** Ends a failed job: nothing of it stays on disk; its answer waits in memory for one poll. */
  async #fail(tenant: string, fingerprint: string, answer: CachedAnswer): Promise<void> {
    // Kept before the record goes: a poll in between finds the failure, never a missing job (a new one).
    const now = Date.now();
    for (const [name, kept] of this.#failures) if (kept.expiresAt <= now) this.#failures.delete(name);
    if (this.#failures.size >= MAX_FAILURES_KEPT) this.#failures.delete(this.#failures.keys().next().value!);
    const keepMs = Math.min(this.settings.resultTtlMs, FAILURE_KEPT_MS);
    this.#failures.set(resultKey(tenant, fingerprint), { answer, expiresAt: now + keepMs });
    await this.kv.atomic().delete(["job", tenant, fingerprint]).delete(["pending", tenant, fingerprint])
      .commit();
    this.metrics.asyncJobs.inc({ state: "failed" });
    this.metrics.asyncJobsPending.dec();
  }
}

const MAX_FAILURES_KEPT = 10_000;

function resultKey(tenant: string, fingerprint: string): string {
  return `${tenant}\u0000${fingerprint}`;
}
