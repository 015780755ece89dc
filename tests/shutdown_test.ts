/** Graceful shutdown of the real program: signals, drain, the drain deadline. */
import { assert, assertEquals, assertMatch, waitFor } from "./assert.ts";
import { FakeUpstream } from "./fake_upstream.ts";
import { freePort, signalTest, spawnBridge, startProcess, startTestBridge } from "./harness.ts";

function startStream(url: string): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "m", stream: true, messages: [] }),
  });
}

signalTest("SIGTERM during a 1 s stream lets it finish, then the process exits 0", async () => {
  const upstream = new FakeUpstream({ chunkDelayMs: 250, chunkSize: 8 });
  const bridge = await spawnBridge(upstream.url);
  try {
    const response = await startStream(bridge.url);
    const reader = response.body!.getReader();
    await reader.read();
    bridge.process.kill("SIGTERM");
    await waitFor(() => bridge.output().includes("SIGTERM: draining"), { message: "the drain began" });
    // New connections are refused once draining began, while the stream is still going.
    const refused = await fetch(`${bridge.url}/health`).catch((error) => error);
    assert(refused instanceof Error, "a new connection during the drain is refused");
    let text = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      text += new TextDecoder().decode(chunk.value);
    }
    assert(text.endsWith("data: [DONE]\n\n"), "the stream finished normally");
    const status = await bridge.process.status;
    assertEquals(status.code, 0);
    assertMatch(bridge.output(), /stopped/);
  } finally {
    await upstream.close();
  }
});

signalTest(
  "streams still open at --shutdown-timeout end with an error event, and the process exits",
  async () => {
    const upstream = new FakeUpstream({ chunkDelayMs: 400, chunkSize: 2 });
    const bridge = await spawnBridge(upstream.url, "--shutdown-timeout", "300");
    try {
      const response = await startStream(bridge.url);
      const reader = response.body!.getReader();
      await reader.read();
      const start = performance.now();
      bridge.process.kill("SIGTERM");
      let text = "";
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        text += new TextDecoder().decode(chunk.value);
      }
      assertMatch(
        text,
        /event: error\ndata: \{"error":\{"message":"The bridge is shutting down[^"]*","type":"server_error","code":"shutting_down"/,
      );
      assert(!text.includes("[DONE]"));
      const status = await bridge.process.status;
      assertEquals(status.code, 0);
      // Exits at the 300 ms deadline, not when the 400 ms-a-chunk stream would end (a generous bound).
      assert(performance.now() - start < 5000, "exited soon after the deadline");
      await upstream.waitForStreamEnds(1); // the upstream stream was cancelled, not left running
    } finally {
      await upstream.close();
    }
  },
);

signalTest("a second signal more than a second after the first exits at once", async () => {
  const upstream = new FakeUpstream({ chunkDelayMs: 1000, chunkSize: 1 });
  const bridge = await spawnBridge(upstream.url);
  try {
    const response = await startStream(bridge.url);
    const reader = response.body!.getReader();
    await reader.read();
    const start = performance.now();
    bridge.process.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 100));
    bridge.process.kill("SIGINT"); // within a second: the same request, ignored
    await new Promise((resolve) => setTimeout(resolve, 1200));
    assertEquals(
      await Promise.race([bridge.process.status.then(() => "exited"), Promise.resolve("running")]),
      "running",
    );
    bridge.process.kill("SIGINT");
    const status = await bridge.process.status;
    assertEquals(status.code, 1);
    // At once, not after the stream's many seconds (a generous bound on a shared machine).
    assert(performance.now() - start < 5000);
    await reader.cancel().catch(() => {});
    assertMatch(bridge.output(), /SIGINT again: exiting now/);
  } finally {
    await upstream.close();
  }
});

Deno.test("/ready answers 503 while draining; /health stays 200", async () => {
  await using t = await startTestBridge();
  t.running.bridge.lifecycle.startDraining();
  const ready = await t.running.bridge.app.request("/ready");
  assertEquals(ready.status, 503);
  assertEquals(await ready.json(), { status: "draining" });
  assertEquals((await t.running.bridge.app.request("/health")).status, 200);
});

/**
 * Under `deno task start`, a signal to the process group (a terminal's Ctrl-C: SIGINT; systemd's control-group
 * kill: SIGTERM) reaches the task runner and the bridge at once, and the runner passes it on: the bridge gets
 * it twice. It must drain, not exit at once.
 */
async function groupSignalDrains(signal: "SIGINT" | "SIGTERM"): Promise<void> {
  const upstream = new FakeUpstream({ chunkDelayMs: 200, chunkSize: 8 });
  const port = freePort();
  // setsid: the task runner and the bridge in a process group of their own, as a terminal would have them.
  const task = await startProcess("setsid", [
    Deno.execPath(),
    "task",
    "start",
    "-l",
    `127.0.0.1:${port}`,
    "-o",
    upstream.url,
  ], { port });
  const output = () => task.output();
  try {
    const response = await startStream(`http://127.0.0.1:${port}`);
    const reader = response.body!.getReader();
    await reader.read();
    await new Deno.Command("kill", { args: [`-${signal.slice(3)}`, "--", `-${task.process.pid}`] }).output();
    let text = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      text += new TextDecoder().decode(chunk.value);
    }
    assert(text.endsWith("data: [DONE]\n\n"), `the stream finished normally: ${text.slice(-200)}`);
    const status = await task.process.status;
    assertEquals(status.code, 0, output());
    assert(!output().includes("exiting now"), output());
    assertMatch(output(), new RegExp(`${signal}: draining`));
  } finally {
    try {
      task.process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await upstream.close();
  }
}

signalTest(
  "Ctrl-C to the process group under deno task start drains gracefully",
  () => groupSignalDrains("SIGINT"),
);
signalTest(
  "SIGTERM to the process group under deno task start drains gracefully",
  () => groupSignalDrains("SIGTERM"),
);
