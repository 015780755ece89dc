/**
 * Issue 15, item 5: memory stays bounded, with and without the cache, whatever the upstream sends or the client
 * reads: a 1 GiB stream, a compression bomb, a client that pauses. The bridge runs as a child process; its
 * resident memory is read from /proc while the answer goes through.
 */
import { gzipSync } from "node:zlib";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { type Child, spawnBridge, tempCacheDir } from "./harness.ts";
import { ScriptedUpstream } from "./scripted_upstream.ts";

const MiB = 1024 * 1024;
const RSS_LIMIT = 350 * MiB;
const encoder = new TextEncoder();

/** One chunk-encoded SSE event carrying `size` bytes of content. */
function sseChunk(size: number): Uint8Array {
  const event = `data: {"choices":[{"index":0,"delta":{"content":"${"x".repeat(size)}"}}]}\n\n`;
  return encoder.encode(`${event.length.toString(16)}\r\n${event}\r\n`);
}

/** An upstream that streams about `totalBytes` of SSE, as fast as the bridge reads it; counts what it wrote. */
function hugeStream(totalBytes: number): { upstream: ScriptedUpstream; written: () => number } {
  const chunk = sseChunk(64 * 1024 - 64);
  const count = Math.ceil(totalBytes / chunk.length);
  let written = 0;
  const upstream = new ScriptedUpstream(() => ({
    write: [
      "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
      ...Array.from({ length: count }, () => chunk),
      `e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n`,
    ],
    onWrite: (bytes: number) => void (written += bytes),
  }));
  return { upstream, written: () => written };
}

/** The peak resident memory of process `pid` while `work` runs (sampled every 25 ms). */
async function peakRss<T>(pid: number, work: () => Promise<T>): Promise<[number, T]> {
  let peak = 0;
  let running = true;
  const sampling = (async () => {
    while (running) {
      const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
      peak = Math.max(peak, Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  let result: T;
  try {
    result = await work();
  } finally {
    running = false;
    await sampling;
  }
  if (peak === 0) throw new Error(`could not read /proc/${pid}/status: the memory bound was not measured`);
  return [peak, result];
}

const CHAT_STREAM = JSON.stringify({
  model: "m",
  stream: true,
  messages: [{ role: "user", content: "a lot" }],
});

async function readAll(response: Response): Promise<number> {
  let bytes = 0;
  for await (const chunk of response.body!) bytes += chunk.length;
  return bytes;
}

async function withBridge(
  upstream: string,
  flags: string[],
  fn: (bridge: Child) => Promise<void>,
): Promise<void> {
  const bridge = await spawnBridge(upstream, ...flags);
  try {
    await fn(bridge);
  } finally {
    bridge.process.kill("SIGTERM");
    await bridge.process.status;
  }
}

for (const cache of [false, true]) {
  Deno.test({
    name: `a 1 GiB stream ${cache ? "with" : "without"} the cache: resident memory stays under 350 MB`,
    ignore: Deno.build.os !== "linux",
    async fn() {
      await using dir = await tempCacheDir();
      const { upstream, written } = hugeStream(1024 * MiB);
      await using _ = upstream;
      const flags = cache ? ["--enable-cache", "--cache-dir", dir.path] : [];
      await withBridge(upstream.url, flags, async (bridge) => {
        let followerText = "";
        const [peak, bytes] = await peakRss(bridge.process.pid, async () => {
          const ask = () => fetch(`${bridge.url}/v1/chat/completions`, { method: "POST", body: CHAT_STREAM });
          const response = await ask();
          if (!cache) return await readAll(response);
          // With the cache, an identical request joins the flight and then does not read: it is dropped once it
          // trails by more than a storable answer, and the leader never waits for it.
          const follower = await ask();
          assertEquals(follower.headers.get("x-cache"), "COALESCED");
          const leaderBytes = await readAll(response);
          followerText = new TextDecoder().decode(await follower.bytes()).slice(-300);
          return leaderBytes;
        });
        if (cache) assertMatch(followerText, /event: error\ndata: .*"fell_behind"/);
        assert(bytes > 1000 * MiB, `the whole stream arrived: ${bytes} bytes`);
        assert(written() > 1000 * MiB);
        assert(peak < RSS_LIMIT, `peak RSS ${(peak / MiB).toFixed(0)} MiB`);
        if (cache) {
          // Too large to store: the next identical request is a miss, not a cut replay.
          const again = await fetch(`${bridge.url}/v1/chat/completions`, {
            method: "POST",
            body: CHAT_STREAM,
          });
          assertEquals(again.headers.get("x-cache"), "MISS");
          await again.body?.cancel();
        }
      });
    },
  });
}

Deno.test({
  name: "a client that pauses slows the upstream down (with the cache): nothing is read far ahead",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using dir = await tempCacheDir();
    const { upstream, written } = hugeStream(512 * MiB);
    await using _ = upstream;
    await withBridge(upstream.url, ["--enable-cache", "--cache-dir", dir.path], async (bridge) => {
      const [peak] = await peakRss(bridge.process.pid, async () => {
        const response = await fetch(`${bridge.url}/v1/chat/completions`, {
          method: "POST",
          body: CHAT_STREAM,
        });
        const reader = response.body!.getReader();
        let read = 0;
        while (read < 8 * MiB) read += (await reader.read()).value!.length;
        await new Promise((resolve) => setTimeout(resolve, 1500)); // the client pauses
        // What the upstream could write meanwhile is bounded by socket buffers, not by the answer's size.
        assert(
          written() < read + 64 * MiB,
          `upstream wrote ${(written() / MiB).toFixed(0)} MiB for ${read >> 20} MiB read`,
        );
        await reader.cancel();
      });
      assert(peak < RSS_LIMIT, `peak RSS ${(peak / MiB).toFixed(0)} MiB`);
    });
  },
});

Deno.test({
  name: "a gzip bomb is a 502 and resident memory stays under 350 MB",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const bomb = new Uint8Array(gzipSync(new Uint8Array(1024 * MiB).fill(32)));
    await using upstream = new ScriptedUpstream(() => ({
      write: [
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n" +
        `content-length: ${bomb.length}\r\n\r\n`,
        bomb,
      ],
    }));
    await withBridge(upstream.url, [], async (bridge) => {
      const [peak, answer] = await peakRss(bridge.process.pid, async () => {
        const response = await fetch(`${bridge.url}/v1/chat/completions`, {
          method: "POST",
          body: '{"model":"m","messages":[]}',
        });
        return { status: response.status, body: await response.text() };
      });
      assertEquals(answer.status, 502);
      assertMatch(answer.body, /--max-response-size/);
      assert(peak < RSS_LIMIT, `peak RSS ${(peak / MiB).toFixed(0)} MiB`);
    });
  },
});
