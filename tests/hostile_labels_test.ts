/** Issue 15, item 8: made-up methods and paths cannot make up metric series or forge log lines. */
import { assert, assertEquals } from "./assert.ts";
import { rawHttp, startTestBridge } from "./harness.ts";

Deno.test("3,000 made-up methods and paths add a bounded number of metric series", async () => {
  await using t = await startTestBridge();
  for (let i = 0; i < 300; i++) {
    await rawHttp(t.url, `M${i}X /v1/made-up-${i} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n`);
  }
  for (let i = 0; i < 2700; i += 100) {
    await Promise.all(
      Array.from(
        { length: 100 },
        (_, j) => fetch(`${t.url}/api/made-up-${i + j}`).then((r) => r.body?.cancel()),
      ),
    );
  }
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  const series = metrics.split("\n").filter((line) => line.startsWith("bridge_http_requests_total{"));
  assert(series.length <= 10, `${series.length} series:\n${series.join("\n")}`);
  assert(series.some((line) => line.includes('method="OTHER"') && line.includes('route="other"')));
  const durations = metrics.split("\n").filter((line) =>
    line.startsWith("bridge_http_request_duration_seconds_count{")
  );
  assert(durations.length <= 10, `${durations.length} duration series`);
  assertEquals(metrics.includes("made-up"), false);
});
