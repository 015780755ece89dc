/**
 * Fair share of the upstream (`--max-inflight`, `--queue-size`, `--queue-timeout`, per-tenant `inflight=`):
 * at most `maxInflight` requests are at the upstream at once, counted from the moment a request is sent until its
 * answer's last byte (a stream holds its slot until it ends). Over the cap a request waits in a bounded queue,
 * first in first out within a tenant and round-robin across tenants, so one tenant's burst cannot starve
 * another's single request. A tenant at its own `inflight` limit waits too, without holding up the others.
 *
 * Only real upstream calls take a slot: cache hits and requests that join an identical one never reach here.
 * The caps are per bridge process.
 */
import type { AdmissionSettings } from "../config/index.ts";
import { BridgeError } from "../core/errors.ts";
import { type Cancellation, schedule, type Timer } from "../core/time.ts";

/** A slot at the upstream: release it once, when the answer is over. */
export interface Permit {
  /** How long the request waited for its slot, in ms. */
  readonly waitedMs: number;
  release(): void;
}

export class QueueFull extends BridgeError {
  constructor() {
    super(503, "server_error", "queue_full", "The bridge's queue for the upstream is full: retry shortly.", {
      "retry-after": "1",
    });
  }
}

export class QueueTimeout extends BridgeError {
  constructor(ms: number) {
    super(
      503,
      "server_error",
      "queue_timeout",
      `No upstream slot came free within the --queue-timeout of ${ms} ms: retry shortly.`,
      { "retry-after": "1" },
    );
  }
}

export class TenantOverLimit extends BridgeError {
  constructor(tenant: string, what: string, retryAfterSeconds = 1) {
    super(
      429,
      "rate_limit_error",
      "tenant_limit_exceeded",
      `The access key '${tenant}' is over its own ${what}: retry after ${retryAfterSeconds} s.`,
      { "retry-after": String(retryAfterSeconds) },
    );
  }
}

interface Waiter {
  readonly tenant: string;
  readonly limit?: number;
  readonly since: number;
  grant(): void;
  reject(error: BridgeError): void;
  readonly timer?: Timer;
  removeAbort(): void;
}

/** What the admission reports to metrics. */
export interface AdmissionObserver {
  changed?(inflight: number, queued: number): void;
  waited?(seconds: number): void;
  rejected?(reason: "queue_full" | "queue_timeout" | "tenant_inflight", tenant: string): void;
}

export class Admission {
  #inflight = 0;
  #queued = 0;
  readonly #perTenant = new Map<string, number>();
  /** Waiters by tenant, and the tenants with waiters in round-robin order. */
  readonly #queues = new Map<string, Waiter[]>();
  readonly #order: string[] = [];

  constructor(readonly settings: AdmissionSettings, private readonly observer: AdmissionObserver = {}) {}

  get inflight(): number {
    return this.#inflight;
  }

  get queued(): number {
    return this.#queued;
  }

  /**
   * A slot for a request of `tenant` (its own `inflight` cap `limit`, if any). Resolves at once when one is free
   * and nobody waits before it; otherwise waits its turn. `background` requests (async jobs) wait without the
   * queue's size or time bounds. Rejects with QueueFull, QueueTimeout or TenantOverLimit, or with the
   * cancellation's reason when the client leaves (it leaves the queue at once).
   */
  acquire(
    tenant: string,
    limit: number | undefined,
    cancellation: Cancellation,
    background = false,
  ): Promise<Permit> {
    if (cancellation.aborted) return Promise.reject(cancellation.reason);
    const since = performance.now();
    if (!this.#queues.has(tenant) && this.#canRun(tenant, limit)) {
      return Promise.resolve(this.#grant(tenant, since));
    }
    if (!background && this.#queued >= this.settings.queueSize) {
      this.observer.rejected?.("queue_full", tenant);
      return Promise.reject(new QueueFull());
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        tenant,
        limit,
        since,
        grant: () => {
          this.#leave(waiter);
          resolve(this.#grant(tenant, since));
        },
        reject: (error) => {
          this.#leave(waiter);
          reject(error);
        },
        timer: background ? undefined : schedule(this.settings.queueTimeoutMs, () => {
          // Waiting on its own tenant's cap while the upstream had room: the tenant's limit, a 429.
          const ownLimit = this.#globalRoom() && !this.#canRun(tenant, limit);
          this.observer.rejected?.(ownLimit ? "tenant_inflight" : "queue_timeout", tenant);
          waiter.reject(
            ownLimit
              ? new TenantOverLimit(tenant, `limit of ${limit} requests in flight`)
              : new QueueTimeout(this.settings.queueTimeoutMs),
          );
        }),
        removeAbort: cancellation.onAbort((reason) => waiter.reject(reason as BridgeError)),
      };
      let queue = this.#queues.get(tenant);
      if (!queue) {
        this.#queues.set(tenant, queue = []);
        this.#order.push(tenant);
      }
      queue.push(waiter);
      this.#queued++;
      this.#report();
    });
  }

  #globalRoom(): boolean {
    return this.settings.maxInflight === 0 || this.#inflight < this.settings.maxInflight;
  }

  #canRun(tenant: string, limit: number | undefined): boolean {
    return this.#globalRoom() && (limit === undefined || (this.#perTenant.get(tenant) ?? 0) < limit);
  }

  #grant(tenant: string, since: number): Permit {
    this.#inflight++;
    this.#perTenant.set(tenant, (this.#perTenant.get(tenant) ?? 0) + 1);
    this.#report();
    const waitedMs = performance.now() - since;
    this.observer.waited?.(waitedMs / 1000);
    let released = false;
    return {
      waitedMs,
      release: () => {
        if (released) return;
        released = true;
        this.#inflight--;
        const left = (this.#perTenant.get(tenant) ?? 1) - 1;
        if (left) this.#perTenant.set(tenant, left);
        else this.#perTenant.delete(tenant);
        this.#dispatch();
        this.#report();
      },
    };
  }

  /** Takes a waiter out of its queue (granted, timed out or gone). */
  #leave(waiter: Waiter): void {
    waiter.timer?.cancel();
    waiter.removeAbort();
    const queue = this.#queues.get(waiter.tenant);
    const index = queue?.indexOf(waiter) ?? -1;
    if (index < 0) return;
    queue!.splice(index, 1);
    this.#queued--;
    if (queue!.length === 0) {
      this.#queues.delete(waiter.tenant);
      this.#order.splice(this.#order.indexOf(waiter.tenant), 1);
    }
    this.#report();
  }

  /** Grants free slots to waiting tenants in turn: the head of each tenant's queue, round-robin. */
  #dispatch(): void {
    let scanned = 0;
    while (this.#globalRoom() && this.#order.length && scanned < this.#order.length) {
      const tenant = this.#order[0];
      // Whatever happens, this tenant goes to the back: the next slot is another tenant's turn.
      this.#order.push(this.#order.shift()!);
      const head = this.#queues.get(tenant)![0];
      if (this.#canRun(tenant, head.limit)) {
        head.grant();
        scanned = 0;
      } else scanned++;
    }
  }

  #report(): void {
    this.observer.changed?.(this.#inflight, this.#queued);
  }
}
