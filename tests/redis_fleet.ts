/** A fleet for the scale-out tests: replicas of the bridge sharing one Redis, and the requests they send. */
import { waitFor } from "./assert.ts";
import type { FakeUpstream } from "./fake_upstream.ts";
import { startTestBridge, tempCacheDir, type TestBridge } from "./harness.ts";

export const chat = (content = "hi", extra: Record<string, unknown> = {}) => ({
  model: "deepseek-r1:7b",
  messages: [{ role: "user", content }],
  ...extra,
});

export const job = (fingerprint: string, content = "a long task") => ({
  ...chat(content),
  request_fingerprint: fingerprint,
});

/** Two replicas of the bridge in front of one upstream, sharing `redisUrl`. */
export async function twoReplicas(redisUrl: string, upstream: FakeUpstream, ...flags: string[]) {
  const dirA = await tempCacheDir();
  const dirB = await tempCacheDir();
  const start = (dir: string) =>
    startTestBridge(["--enable-cache", "--cache-dir", dir, "--redis-url", redisUrl, ...flags], {
      sharedUpstream: upstream,
    });
  const a = await start(dirA.path);
  const b = await start(dirB.path);
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a[Symbol.asyncDispose]();
      await b[Symbol.asyncDispose]();
      await dirA[Symbol.asyncDispose]();
      await dirB[Symbol.asyncDispose]();
    },
  };
}

/** Polls a job at `replica` until it is no longer waiting (202); resolves with that answer. */
export function jobAnswer(
  replica: TestBridge,
  fingerprint: string,
  headers: HeadersInit = {},
  options: { timeout?: number; interval?: number; message: string },
): Promise<Response> {
  return waitFor(async () => {
    const poll = await replica.post("/v1/chat/completions", job(fingerprint), headers);
    if (poll.status === 202) return void await poll.body?.cancel();
    return poll;
  }, options);
}
