/**
 * Issue 15, item 2: answers never cross credentials. Without shared mode the client's own credential goes
 * upstream, so its hash (never the value) is part of the cache key, the single-flight key and the job identity.
 */
import { assert, assertEquals, waitFor } from "./assert.ts";
import { startTestBridge, tempCacheDir } from "./harness.ts";

const CHAT = { model: "m", messages: [{ role: "user", content: "who am I?" }] };
const as = (key?: string): HeadersInit => key ? { authorization: `Bearer ${key}` } : {};

Deno.test("cache: a request with key A is never answered from the answer fetched with key B or with none", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  for (const key of ["sk-a", "sk-b", undefined, "sk-a"]) {
    const answer = await t.post("/v1/chat/completions", CHAT, as(key));
    await answer.body?.cancel();
    await t.cacheSettled();
  }
  assertEquals(t.upstream.calls, 3, "A, B and none each made their own call; A's repeat was a hit");
  const sent = t.upstream.received.map((request) => request.headers.get("authorization"));
  assertEquals(sent, ["Bearer sk-a", "Bearer sk-b", null]);
  // x-api-key and api-key count as credentials too.
  const others: Record<string, string>[] = [{ "x-api-key": "k1" }, { "x-api-key": "k2" }, {
    "api-key": "k1",
  }];
  for (const headers of others) {
    await (await t.post("/v1/chat/completions", CHAT, headers)).body?.cancel();
    await t.cacheSettled();
  }
  assertEquals(t.upstream.calls, 6);
  // The credential itself is nowhere on disk.
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir.path)) files.push(entry.name);
  for (const file of files) {
    const bytes = await Deno.readFile(`${dir.path}/${file}`);
    const text = new TextDecoder("latin1").decode(bytes);
    assert(!text.includes("sk-a") && !text.includes("sk-b"), `${file} holds a credential`);
  }
});

Deno.test("--cache-shared-across-tenants lets clients with different credentials share answers", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge([
    "--enable-cache",
    "--cache-dir",
    dir.path,
    "--cache-shared-across-tenants",
  ]);
  for (const key of ["sk-a", "sk-b"]) {
    await (await t.post("/v1/chat/completions", CHAT, as(key))).body?.cancel();
    await t.cacheSettled();
  }
  assertEquals(t.upstream.calls, 1);
});

Deno.test("single flight: identical requests in flight with different keys are not coalesced", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-cache", "--cache-dir", dir.path]);
  t.upstream.always({ delayMs: 300 });
  const answers = await Promise.all(
    ["sk-a", "sk-b", "sk-a"].map((key) => t.post("/v1/chat/completions", CHAT, as(key))),
  );
  const outcomes = answers.map((answer) => answer.headers.get("x-cache"));
  for (const answer of answers) await answer.body?.cancel();
  assertEquals(t.upstream.calls, 2, "A and B each called once; A's twin joined A's flight");
  assertEquals(outcomes.filter((outcome) => outcome === "COALESCED").length, 1);
});

Deno.test("async jobs: a job is its credential's; a failed answer is never a stored result for anyone", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge(["--enable-async-request", "--cache-dir", dir.path]);
  const job = { ...CHAT, request_fingerprint: "fp-who" };
  const poll = async (key: string) =>
    await waitFor(async () => {
      const answer = await t.post("/v1/chat/completions", job, as(key));
      if (answer.status !== 202) return answer;
      await answer.body?.cancel();
    }, { interval: 30, message: `the job of ${key} finished` });
  // B's upstream call fails with 401 (a wrong key).
  t.upstream.plan({ status: 401, body: '{"error":{"message":"bad key"}}' });
  assertEquals((await t.post("/v1/chat/completions", job, as("sk-b"))).status, 202);
  const failed = await poll("sk-b");
  assertEquals(failed.status, 401, "B learns of its failure once");
  await failed.body?.cancel();
  // A, with the same fingerprint, gets its own job and its own successful answer, not B's 401.
  const mine = await poll("sk-a");
  assertEquals(mine.status, 200);
  await mine.body?.cancel();
  // B again: the failure was not kept as a result; a new job runs and succeeds.
  const again = await poll("sk-b");
  assertEquals(again.status, 200);
  await again.body?.cancel();
  assertEquals(t.upstream.calls, 3);
  assertEquals(t.upstream.received.map((request) => request.headers.get("authorization")), [
    "Bearer sk-b",
    "Bearer sk-a",
    "Bearer sk-b",
  ]);
});
