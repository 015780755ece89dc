/**
 * Issue 15, item 1: a connection flood never ends the process. The bridge runs with `ulimit -n 256`; 400 idle
 * connections run its descriptors out (Deno.serve's accept loop ends); it listens again by itself, answers
 * /health within seconds once the flood ends, and a stream that was being served meanwhile still completes.
 */
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { freePort, signalTest, startProcess } from "./harness.ts";

signalTest(
  "a flood of idle connections past the open-file limit: the bridge survives and serves again",
  async () => {
    const upstream = new FakeUpstream({ chunkDelayMs: 100, chunkSize: 4 });
    const port = freePort();
    const deno = Deno.execPath();
    const bridge = await startProcess("sh", [
      "-c",
      `ulimit -n 256 && exec "${deno}" run --allow-net --allow-env --allow-read --allow-write --allow-run main.ts ` +
      `-l 127.0.0.1:${port} -o ${upstream.url}`,
    ], { port });
    const output = () => bridge.output();
    const url = `http://127.0.0.1:${port}`;
    const flood: Deno.Conn[] = [];
    try {
      // A stream in flight before and during the flood.
      const stream = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", stream: true, messages: [] }),
      });
      const streamText = stream.text();
      for (let i = 0; i < 400; i++) {
        try {
          flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        } catch {
          break; // the backlog is full: the flood has done what it can
        }
      }
      await waitFor(() => output().includes("listener stopped accepting"), {
        timeout: 10_000,
        message: "the bridge noticed the descriptors ran out",
      });
      for (const conn of flood.splice(0)) conn.close();
      // Back within seconds: /health, then a real request.
      const health = await waitFor(
        () =>
          fetch(`${url}/health`).then(
            (response) => response.status === 200 ? response : undefined,
            () => undefined,
          ),
        { timeout: 10_000, interval: 100, message: "/health answered after the flood" },
      );
      assertEquals(await health.json(), { status: "ok" });
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: '{"model":"m","messages":[]}',
      });
      assertEquals(chat.status, 200);
      await chat.body?.cancel();
      assertMatch(await streamText, /data: \[DONE\]\n\n$/);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assertMatch(metrics, /bridge_listener_restarts_total [1-9]/);
      assertEquals(
        output().match(/listener stopped accepting/g)?.length,
        1,
        "one warning, not one per attempt",
      );
      assert(!/Uncaught|panicked/.test(output()), output());
    } finally {
      for (const conn of flood) {
        conn.close();
      }
      bridge.process.kill("SIGTERM");
      const status = await bridge.process.status;
      await upstream.close();
      assertEquals(status.code, 0, output());
    }
  },
);
