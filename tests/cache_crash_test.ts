/** A bridge killed (SIGKILL) while writing its cache leaves a store that opens and answers correctly. */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { signalTest, spawnBridge, tempCacheDir } from "./harness.ts";

signalTest(
  "SIGKILL while writing large answers: after a restart every answer is right or a miss",
  async () => {
    await using dir = await tempCacheDir();
    const reply = "0123456789".repeat(30_000); // 300 KB: several parts per entry
    const upstream = new FakeUpstream({ reply });
    const ask = (url: string, n: number) =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: `question ${n}` }] }),
      });
    try {
      const first = await spawnBridge(upstream.url, "--enable-cache", "--cache-dir", dir.path);
      let answered = 0;
      const inFlight = Array.from(
        { length: 40 },
        (_, n) => ask(first.url, n).then((r) => r.arrayBuffer()).then(() => answered++).catch(() => null),
      );
      // Kill it once some answers are stored, while others are still coming or being written.
      const stored = async () => {
        const metrics = await (await fetch(`${first.url}/metrics`)).text();
        return Number(/bridge_cache_entries\{tier="disk"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      };
      const storedAtKill = await waitFor(async () => {
        const count = await stored();
        return count >= 3 ? count : 0;
      }, { interval: 5, message: "three answers on disk" });
      first.process.kill("SIGKILL");
      // Stores trail the answers: most are still being written when the process dies.
      assert(storedAtKill < 40, "the kill came while answers were still being written");
      await first.process.status;
      await Promise.all(inFlight);

      const second = await spawnBridge(upstream.url, "--enable-cache", "--cache-dir", dir.path);
      let hits = 0;
      for (let n = 0; n < 40; n++) {
        const response = await ask(second.url, n);
        assertEquals(response.status, 200, `question ${n}`);
        const body = await response.json();
        assertEquals(body.choices[0].message.content, reply, `question ${n}: a whole, correct answer`);
        if (response.headers.get("x-cache") === "HIT-DISK") hits++;
      }
      assert(hits > 0, "answers stored before the kill are served after the restart");
      second.process.kill("SIGTERM");
      assertEquals((await second.process.status).code, 0);
    } finally {
      await upstream.close();
    }
  },
);

signalTest("a graceful stop right after answers were served keeps every one of them on disk", async () => {
  await using dir = await tempCacheDir();
  const upstream = new FakeUpstream();
  const ask = (url: string, n: number) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: `fresh ${n}` }] }),
    });
  try {
    const first = await spawnBridge(upstream.url, "--enable-cache", "--cache-dir", dir.path);
    await Promise.all(Array.from({ length: 30 }, (_, n) => ask(first.url, n).then((r) => r.arrayBuffer())));
    first.process.kill("SIGTERM"); // at once: most answers are still on their way into the store
    assertEquals((await first.process.status).code, 0);
    const second = await spawnBridge(upstream.url, "--enable-cache", "--cache-dir", dir.path);
    const outcomes: string[] = [];
    for (let n = 0; n < 30; n++) {
      const response = await ask(second.url, n);
      await response.arrayBuffer();
      outcomes.push(response.headers.get("x-cache") ?? "none");
    }
    assertEquals(outcomes.filter((outcome) => outcome === "HIT-DISK").length, 30, outcomes.join(" "));
    second.process.kill("SIGTERM");
    await second.process.status;
  } finally {
    await upstream.close();
  }
});
