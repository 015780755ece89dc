/// <reference lib="deno.worker" />
/**
 * The memory watchdog inside a Lua process: a worker thread, so it keeps running while the main thread is stuck
 * in a script. Every 20 ms it reads the process's resident memory; past the limit it says so on stderr, where
 * the bridge (pool.ts) is listening, and the bridge stops the process. (The bridge cannot read /proc itself:
 * Deno asks for all permissions there.)
 */
const CHECK_MS = 20;

self.onmessage = (event: MessageEvent<{ limitBytes: number }>) => {
  const baseline = Deno.memoryUsage().rss;
  const limit = baseline + event.data.limitBytes;
  const encoder = new TextEncoder();
  setInterval(() => {
    const rss = Deno.memoryUsage().rss;
    if (rss > limit) Deno.stderr.writeSync(encoder.encode(`\nlua-memory-exceeded ${rss - baseline}\n`));
  }, CHECK_MS);
};
