/** Seeded request traces for the cache's policy simulations: runs with the same seed compare. */

/** A small, well-mixed seeded generator of uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A seeded Zipf(s) trace over `keys` keys (inverse-CDF sampling): entry i is the key id of request i. The ranks
 * are shuffled over the ids by `seed` too, so two seeds give two different popular sets (a popularity shift).
 */
export function zipfTrace(keys: number, length: number, s: number, seed: number): Int32Array {
  const cdf = new Float64Array(keys);
  let sum = 0;
  for (let k = 0; k < keys; k++) cdf[k] = sum += 1 / Math.pow(k + 1, s);
  const idOfRank = new Int32Array(keys);
  for (let i = 0; i < keys; i++) idOfRank[i] = i;
  const shuffle = mulberry32(seed * 7919 + 1);
  for (let i = keys - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [idOfRank[i], idOfRank[j]] = [idOfRank[j], idOfRank[i]];
  }
  const uniform = mulberry32(seed);
  const trace = new Int32Array(length);
  for (let i = 0; i < length; i++) {
    const target = uniform() * sum;
    let low = 0;
    let high = keys - 1;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (cdf[mid] < target) low = mid + 1;
      else high = mid;
    }
    trace[i] = idOfRank[low];
  }
  return trace;
}
