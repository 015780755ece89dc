/** Shared (enterprise) mode through the real server: key injection, the key pool, access keys, secrecy. */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { signalTest, spawnBridge, startTestBridge, tempCacheDir } from "./harness.ts";
import { FakeUpstream } from "./fake_upstream.ts";

const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };
const KEY_A = "sk-upstream-aaaaaaaaaaaa";
const KEY_B = "sk-upstream-bbbbbbbbbbbb";
const ACCESS = "bridge-access-0123456789";

Deno.test("shared mode: the upstream gets the bridge's key, not the client's", async () => {
  await using t = await startTestBridge(["--enable-shared-mode", "--api-key", KEY_A]);
  const response = await t.post("/v1/chat/completions", chat, {
    authorization: "Bearer client-key",
    "x-api-key": "other",
  });
  assertEquals(response.status, 200);
  await response.body?.cancel();
  assertEquals(t.upstream.received[0].headers.get("authorization"), `Bearer ${KEY_A}`);
  assertEquals(t.upstream.received[0].headers.get("x-api-key"), null);
});

Deno.test("without shared mode the client's Authorization passes through untouched", async () => {
  await using t = await startTestBridge();
  await (await t.post("/v1/chat/completions", chat, { authorization: "Bearer client-key" })).text();
  assertEquals(t.upstream.received[0].headers.get("authorization"), "Bearer client-key");
});

Deno.test("key pool: round-robin; a 401 key is taken out and the request retried on the next key", async () => {
  await using t = await startTestBridge(["--enable-shared-mode", "--api-key", KEY_A, "--api-key", KEY_B]);
  for (let i = 0; i < 4; i++) await (await t.post("/v1/chat/completions", { ...chat, n: i })).text();
  const used = t.upstream.received.map((r) => r.headers.get("authorization"));
  assertEquals(used, [`Bearer ${KEY_A}`, `Bearer ${KEY_B}`, `Bearer ${KEY_A}`, `Bearer ${KEY_B}`]);

  t.upstream.plan({ status: 401, body: '{"error":{"message":"invalid key"}}' });
  const response = await t.post("/v1/chat/completions", chat);
  assertEquals(response.status, 200, "retried on the other key without --retry-attempts");
  await response.body?.cancel();
  const calls = t.upstream.received.slice(4).map((r) => r.headers.get("authorization"));
  assertEquals(calls, [`Bearer ${KEY_A}`, `Bearer ${KEY_B}`]);
  // The refused key is out: every later request uses the other.
  for (let i = 0; i < 3; i++) await (await t.post("/v1/chat/completions", { ...chat, n: 10 + i })).text();
  assert(t.upstream.received.slice(6).every((r) => r.headers.get("authorization") === `Bearer ${KEY_B}`));
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_upstream_keys_healthy 1/);
  assertMatch(metrics, /bridge_upstream_key_requests_total\{key_fp="[0-9a-f]{8}",status="401"\} 1/);
  assert(!metrics.includes(KEY_A) && !metrics.includes(KEY_B), "no key text in /metrics");
  assert(t.logs.some((line) => /taken out of the pool/.test(line)));
});

Deno.test("key pool: 402 and insufficient_quota take a key out; a 429 cools it down for its Retry-After", async () => {
  await using t = await startTestBridge(["--enable-shared-mode", "--api-key", `${KEY_A},${KEY_B}`]);
  t.upstream.plan({
    status: 429,
    headers: { "retry-after": "30" },
    body: '{"error":{"message":"slow down"}}',
  });
  assertEquals((await t.post("/v1/chat/completions", chat)).status, 200);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_upstream_keys_healthy 1/, "the 429 key rests");
  // The resting key is skipped: with the other key out of quota, no key is usable.
  t.upstream.plan({
    status: 429,
    body: '{"error":{"code":"insufficient_quota","message":"You exceeded your quota"}}',
  });
  const none = await t.post("/v1/chat/completions", chat);
  assertEquals(none.status, 429, "the last key's answer is passed on when no other key is left");
  assertMatch(await none.text(), /insufficient_quota/);
  const after = await t.post("/v1/chat/completions", chat);
  assertEquals(after.status, 503);
  const error = (await after.json()).error;
  assertEquals(error.code, "no_upstream_key");
  assertEquals(after.headers.get("retry-after"), "10");
});

Deno.test("access keys: required, checked before the upstream is touched, labels become tenants", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge([
    "--enable-shared-mode",
    "--api-key",
    KEY_A,
    "--access-key",
    `alice:${ACCESS}`,
    "--access-key",
    "bob:bob-key-98765",
    "--enable-cache",
    "--cache-dir",
    dir.path,
  ]);
  const attempts: Record<string, string>[] = [
    {},
    { authorization: "Bearer wrong" },
    { "x-api-key": "nope" },
    {
      authorization: ACCESS,
    },
  ];
  for (const headers of attempts) {
    const refused = await t.post("/v1/chat/completions", chat, headers);
    assertEquals(refused.status, 401);
    const body = await refused.json();
    assertEquals(body.error.code, "invalid_api_key");
    assert(!JSON.stringify(body).includes(ACCESS));
  }
  assertEquals(t.upstream.calls, 0);
  const alice = await t.post("/v1/chat/completions", chat, { authorization: `Bearer ${ACCESS}` });
  assertEquals([alice.status, alice.headers.get("x-cache")], [200, "MISS"]);
  await alice.text();
  await t.cacheSettled();
  // The access key is the bridge's, not the upstream's: it is never forwarded.
  assertEquals(t.upstream.received[0].headers.get("authorization"), `Bearer ${KEY_A}`);
  // Same request, other tenant: its own cache entry.
  const bob = await t.post("/v1/chat/completions", chat, { "x-api-key": "bob-key-98765" });
  assertEquals(bob.headers.get("x-cache"), "MISS");
  await bob.text();
  await t.cacheSettled();
  const aliceAgain = await t.post("/v1/chat/completions", chat, { authorization: `Bearer ${ACCESS}` });
  assertEquals(aliceAgain.headers.get("x-cache"), "HIT-DISK");
  await aliceAgain.text();
  assertEquals(t.upstream.calls, 2);
  // /health and /ready stay open.
  assertEquals((await fetch(`${t.url}/health`)).status, 200);
  assertEquals((await fetch(`${t.url}/ready`)).status, 200);
  const metrics = await (await fetch(`${t.url}/metrics`)).text();
  assertMatch(metrics, /bridge_auth_failures_total 4/);
  assertMatch(metrics, /bridge_tenant_requests_total\{tenant="alice"\} 2/);
});

Deno.test("--cache-shared-across-tenants lets tenants share answers", async () => {
  await using dir = await tempCacheDir();
  await using t = await startTestBridge([
    "--access-key",
    `alice:${ACCESS}`,
    "--access-key",
    "bob:bob-key-98765",
    "--enable-cache",
    "--cache-dir",
    dir.path,
    "--cache-shared-across-tenants",
  ]);
  await (await t.post("/v1/chat/completions", chat, { authorization: `Bearer ${ACCESS}` })).text();
  await t.cacheSettled();
  const bob = await t.post("/v1/chat/completions", chat, { authorization: "Bearer bob-key-98765" });
  assertEquals(bob.headers.get("x-cache"), "HIT-DISK");
  await bob.text();
  // Access keys without shared mode: the client's key is still not forwarded.
  assertEquals(t.upstream.received[0].headers.get("authorization"), null);
});

Deno.test("--metrics-key protects /metrics", async () => {
  await using t = await startTestBridge(["--metrics-key", "metrics-secret-1"]);
  assertEquals((await fetch(`${t.url}/metrics`)).status, 401);
  const ok = await fetch(`${t.url}/metrics`, { headers: { authorization: "Bearer metrics-secret-1" } });
  assertEquals(ok.status, 200);
  assertMatch(await ok.text(), /bridge_http_requests_total/);
});

Deno.test("secrets never reach logs, error bodies, --debug output or --help", async () => {
  await using t = await startTestBridge(
    ["--debug", "--enable-shared-mode", "--api-key", KEY_A, "--access-key", `alice:${ACCESS}`],
    { upstreamUrl: "http://127.0.0.1:9" },
  );
  const response = await t.post("/v1/chat/completions", chat, { authorization: `Bearer ${ACCESS}` });
  assertEquals(response.status, 502);
  assert(!(await response.text()).includes(KEY_A));
  await (await t.post("/v1/chat/completions", chat, { authorization: "Bearer guess" })).text();
  const logs = t.logs.join("\n");
  assert(logs.includes("POST /v1/chat/completions"), "the requests were logged");
  for (const secret of [KEY_A, ACCESS]) assert(!logs.includes(secret), "no secret in the log");
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", "--allow-read", "--allow-net", "main.ts", "--help"],
    env: { BRIDGE_API_KEY: KEY_A },
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(help.stdout);
  assert(text.includes("--api-key") && !text.includes(KEY_A));
});

signalTest(
  "shared mode without a key is refused at start; a non-loopback listener without access keys warns",
  async () => {
    const refused = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env", "--allow-read", "--allow-net", "main.ts", "--enable-shared-mode"],
      stderr: "piped",
    }).output();
    assertEquals(refused.code, 2);
    assertMatch(new TextDecoder().decode(refused.stderr), /--enable-shared-mode needs an upstream key/);
    const upstream = new FakeUpstream();
    try {
      const open = await spawnBridge(
        upstream.url,
        "--enable-shared-mode",
        "--api-key",
        KEY_A,
        "--listen",
        "0.0.0.0:0",
      );
      open.process.kill("SIGTERM");
      await open.process.status;
      assertMatch(open.output(), /without access keys: anyone who can reach/);
      assert(!open.output().includes(KEY_A));
    } finally {
      await upstream.close();
    }
  },
);

signalTest("SIGHUP reloads the key files without dropping requests", async () => {
  await using dir = await tempCacheDir();
  const apiFile = `${dir.path}/api-keys`;
  const accessFile = `${dir.path}/access-keys`;
  await Deno.writeTextFile(apiFile, `# upstream keys\n${KEY_A}\n`);
  await Deno.writeTextFile(accessFile, `alice:${ACCESS}\n`);
  const upstream = new FakeUpstream({ chunkDelayMs: 100 });
  try {
    const bridge = await spawnBridge(
      upstream.url,
      "--enable-shared-mode",
      "--api-keys-file",
      apiFile,
      "--access-keys-file",
      accessFile,
    );
    const ask = (key: string, stream = false) =>
      fetch(`${bridge.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ ...chat, stream }),
      });
    assertEquals((await ask("carol-key-555")).status, 401);
    const inFlight = await ask(ACCESS, true); // a stream running across the reload
    await Deno.writeTextFile(apiFile, `${KEY_B}\n`);
    await Deno.writeTextFile(accessFile, `alice:${ACCESS}\ncarol:carol-key-555\n`);
    bridge.process.kill("SIGHUP");
    for (let i = 0; i < 100 && !bridge.output().includes("keys reloaded"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert((await inFlight.text()).endsWith("data: [DONE]\n\n"), "the request in flight finished");
    const carol = await ask("carol-key-555");
    assertEquals(carol.status, 200);
    await carol.text();
    assertEquals(upstream.received.at(-1)!.headers.get("authorization"), `Bearer ${KEY_B}`);
    bridge.process.kill("SIGTERM");
    assertEquals((await bridge.process.status).code, 0);
    assert(!bridge.output().includes(KEY_A) && !bridge.output().includes(KEY_B));
  } finally {
    await upstream.close();
  }
});
