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
