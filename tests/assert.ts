/**
 * The few assertions the tests use. JSR (and so @std/assert) is not reachable from our build machines, so
 * these stand on node:assert, which Deno ships.
 */
import nodeAssert from "node:assert/strict";

export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(actual, pattern, message);
}

export function assertGreater(actual: number, expected: number, message?: string): void {
  nodeAssert.ok(actual > expected, message ?? `expected ${actual} > ${expected}`);
}

export function assertThrows(fn: () => unknown, message?: string): void {
  nodeAssert.throws(fn, message);
}

export async function assertRejects(
  fn: () => Promise<unknown>,
  check?: (error: unknown) => void,
): Promise<void> {
  let failed = false;
  try {
    await fn();
  } catch (error) {
    failed = true;
    check?.(error);
  }
  nodeAssert.ok(failed, "expected the promise to reject");
}

/**
 * Waits until `condition` holds (polling every `interval` ms) and returns its value; fails with `message` and
 * the time waited once `timeout` ms have passed. Use it instead of fixed sleeps and unbounded polling loops.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { timeout = 10_000, interval = 10, message = "condition" }: {
    timeout?: number;
    interval?: number;
    message?: string;
  } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`waitFor: ${message} did not hold within ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
