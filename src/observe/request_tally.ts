/**
 * The per-request series (requests by route, method and status; their durations by route; requests in flight)
 * counted in plain numbers on the request's path and handed to the exposition when /metrics is read:
 * prom-client hashes and checks a label set on every call, about a µs a request (docs/performance.md).
 * The exposition is the same as prom-client's own counter, histogram and gauge.
 */
import type { Counter } from "prom-client";

interface CountTally {
  readonly labels: { route: string; method: string; status: string };
  count: number;
  /** What the counter was last told. */
  reported: number;
}

interface DurationTally {
  readonly route: string;
  /** Observations per bucket (not cumulative); the last one is above every bound. */
  readonly buckets: number[];
  sum: number;
  count: number;
}

export class RequestTally {
  readonly #counts = new Map<string, CountTally>();
  readonly #durations = new Map<string, DurationTally>();
  #inFlight = 0;

  constructor(private readonly bounds: readonly number[]) {}

  started(): void {
    this.#inFlight++;
  }

  /** A request answered (`method` already a bounded label). */
  finished(route: string, method: string, status: number, seconds: number): void {
    this.#inFlight--;
    const key = `${route} ${method} ${status}`;
    let count = this.#counts.get(key);
    if (!count) {
      count = { labels: { route, method, status: String(status) }, count: 0, reported: 0 };
      this.#counts.set(key, count);
    }
    count.count++;
    let duration = this.#durations.get(route);
    if (!duration) {
      duration = { route, buckets: new Array(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.#durations.set(route, duration);
    }
    let bucket = 0;
    while (bucket < this.bounds.length && seconds > this.bounds[bucket]) bucket++;
    duration.buckets[bucket]++;
    duration.sum += seconds;
    duration.count++;
  }

  /** Requests being answered now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Brings `counter` up to date (its collect hook calls this). */
  reportCounts(counter: Counter<"route" | "method" | "status">): void {
    for (const tally of this.#counts.values()) {
      if (tally.count === tally.reported) continue;
      counter.inc(tally.labels, tally.count - tally.reported);
      tally.reported = tally.count;
    }
  }

  /** A histogram metric for a prom-client registry, read from the tallies. */
  histogram(name: string, help: string) {
    const durations = this.#durations;
    const bounds = this.bounds;
    const get = () => {
      const values = [];
      for (const { route, buckets, sum, count } of durations.values()) {
        let cumulative = 0;
        for (let i = 0; i < bounds.length; i++) {
          cumulative += buckets[i];
          values.push({
            labels: { le: bounds[i] },
            sharedLabels: { route },
            value: cumulative,
            metricName: `${name}_bucket`,
          });
        }
        values.push(
          { labels: { le: "+Inf" }, sharedLabels: { route }, value: count, metricName: `${name}_bucket` },
          { labels: {}, sharedLabels: { route }, value: sum, metricName: `${name}_sum` },
          { labels: {}, sharedLabels: { route }, value: count, metricName: `${name}_count` },
        );
      }
      return { name, help, type: "histogram", values, aggregator: "sum" };
    };
    return { name, help, type: "histogram", aggregator: "sum", get, reset() {} };
  }
}
