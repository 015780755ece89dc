/**
 * Several upstreams (docs/upstreams.md): pools, balancing, conversation affinity, health, failover, routes by
 * model, merged model lists, /upstreams and /ready. Three fake upstreams on loopback ports.
 */
import { assert, assertEquals, assertGreater, assertMatch, waitFor } from "./assert.ts";
import { FakeUpstream, type FakeUpstreamOptions } from "./fake_upstream.ts";
import { startTestBridge, type TestBridge } from "./harness.ts";

interface Fleet extends AsyncDisposable {
  readonly t: TestBridge;
  readonly members: FakeUpstream[];
}

/** A bridge whose default pool is `count` fake upstreams (and `flags` more). */
async function fleet(count: number, flags: string[] = [], options: FakeUpstreamOptions = {}): Promise<Fleet> {
  const members = Array.from({ length: count }, () => new FakeUpstream(options));
  const t = await startTestBridge(
    [...members.slice(1).flatMap((member) => ["--ollama", member.url]), ...flags],
    { sharedUpstream: members[0] },
  );
  return {
    t,
    members,
    async [Symbol.asyncDispose]() {
      await t[Symbol.asyncDispose]();
      await Promise.all(members.map((member) => member.close().catch(() => {})));
    },
  };
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "m",
  messages: [{ role: "user", content }],
  ...extra,
});

async function ok(response: Response): Promise<string> {
  const text = await response.text();
  assertEquals(response.status, 200, text);
  return text;
}

Deno.test("40 concurrent distinct requests spread over a pool of three: each member gets at least 25%", async () => {
  await using f = await fleet(3);
  for (const member of f.members) member.always({ delayMs: 50 });
  await Promise.all(
    Array.from({ length: 40 }, (_, i) => f.t.post("/v1/chat/completions", chat(`q${i}`)).then(ok)),
  );
  const calls = f.members.map((member) => member.calls);
  assertEquals(calls.reduce((a, b) => a + b), 40);
  for (const count of calls) assert(count >= 10, `each member ≥ 25% of 40: ${calls}`);
});

Deno.test("#weight: a member of weight 3 gets about three times the requests of one of weight 1", async () => {
  const heavy = new FakeUpstream();
  await using f = await fleet(1, ["--ollama", `${heavy.url}#3`]);
  for (let i = 0; i < 40; i++) await ok(await f.t.post("/v1/chat/completions", chat(`q${i}`)));
  await heavy.close();
  assertEquals(f.members[0].calls + heavy.calls, 40);
  assertEquals(
    heavy.calls,
    30,
    `sequential requests tie at 0 outstanding: weighted round-robin ${heavy.calls}/40`,
  );
});

Deno.test("a member killed: no client error; it is taken out, and back within one health interval of its restart", async () => {
  await using f = await fleet(3, ["--health-interval", "300"]);
  const [, dead] = f.members;
  const port = new URL(dead.url).port;
  await dead.close();
  for (let i = 0; i < 20; i++) await ok(await f.t.post("/v1/chat/completions", chat(`down ${i}`)));
  const states = await (await fetch(`${f.t.url}/upstreams`)).json();
  const shown = states.find((state: { url: string }) => state.url === dead.url);
  assertEquals(shown.healthy, false);
  assertEquals(shown.pool, "default");
  assert(shown.cooldownUntil > Date.now() - 60_000, JSON.stringify(shown));
  assertMatch(f.t.logs.join("\n"), /upstream taken out/);

  const back = new FakeUpstream({ port: Number(port) });
  try {
    // Back in service after at most one interval (bounded here at many times the configured 300 ms).
    await waitFor(async () => {
      const states = await (await fetch(`${f.t.url}/upstreams`)).json();
      return states.find((state: { url: string }) => state.url === back.url).healthy;
    }, { timeout: 5000, message: "the restarted member healthy again" });
    for (let i = 0; i < 9; i++) await ok(await f.t.post("/v1/chat/completions", chat(`up ${i}`)));
    assertGreater(back.calls, 0);
  } finally {
    await back.close();
  }
});

Deno.test("failover: a member answering 503 or refusing the connection passes the request on, without a retry", async () => {
  await using f = await fleet(3, ["--retry-attempts", "0", "--health-interval", "0"]);
  const [refusing, unavailable, working] = f.members;
  await refusing.close();
  unavailable.always({ status: 503 });
  for (let i = 0; i < 4; i++) await ok(await f.t.post("/v1/chat/completions", chat(`failover ${i}`)));
  assertEquals(working.calls, 4);
  assertGreater(unavailable.calls, 0);
  const metrics = await (await fetch(`${f.t.url}/metrics`)).text();
  assertMatch(metrics, /ollama_request_retry_attempts_total 0/);
});

Deno.test("no failover after a 500, or after a timeout of a request that was written", async () => {
  await using f = await fleet(2, ["--timeout", "1000"]);
  const [a, b] = f.members;
  a.always({ status: 500 });
  b.always({ status: 500 });
  const failed = await f.t.post("/v1/chat/completions", chat("five hundred"));
  assertEquals(failed.status, 500);
  await failed.body?.cancel();
  assertEquals(a.calls + b.calls, 1, "a 500 is the request's problem: one member saw it");
  a.always({ delayMs: 5000 });
  b.always({ delayMs: 5000 });
  const slow = await f.t.post("/v1/chat/completions", chat("slow"));
  assertEquals(slow.status, 504);
  await slow.body?.cancel();
  assertEquals(a.calls + b.calls, 2, "a written request that timed out is not sent to another member");
});

Deno.test("the last member in service is never taken out; a 500 is the request's problem, not the member's", async () => {
  await using f = await fleet(2, ["--health-interval", "0", "--retry-attempts", "0"]);
  const [a, b] = f.members;
  a.always({ status: 500 });
  b.always({ status: 500 });
  for (let i = 0; i < 8; i++) {
    const response = await f.t.post("/v1/chat/completions", chat(`five hundred ${i}`));
    assertEquals(response.status, 500);
    await response.body?.cancel();
  }
  const view = async () => await (await fetch(`${f.t.url}/upstreams`)).json();
  assert((await view()).every((state: { healthy: boolean }) => state.healthy), "500s leave members healthy");
  a.always({ status: 503 });
  b.always({ status: 503 });
  for (let i = 0; i < 8; i++) {
    const response = await f.t.post("/v1/chat/completions", chat(`unavailable ${i}`));
    assertEquals(response.status, 503);
    await response.body?.cancel();
  }
  const states = await view();
  assertEquals(states.filter((state: { healthy: boolean }) => state.healthy).length, 0);
  assertEquals(
    states.filter((state: { cooldownUntil: number | null }) => state.cooldownUntil === null).length,
    1,
    `one member stays in service: ${JSON.stringify(states)}`,
  );
  assertEquals((await fetch(`${f.t.url}/ready`)).status, 503);
  const metrics = await (await fetch(`${f.t.url}/metrics`)).text();
  for (const name of ["requests_total", "errors_total", "inflight", "up", "affinity_hits_total"]) {
    assertMatch(metrics, new RegExp(`bridge_upstream_member_${name}\\{[^}]*member="${a.url}"`));
  }
  assertMatch(metrics, new RegExp(`bridge_upstream_member_up\\{[^}]*member="${b.url}"[^}]*\\} 0`));
});

Deno.test("with several members, each is probed each --health-interval (GET /api/tags)", async () => {
  await using f = await fleet(2, ["--health-interval", "200"]);
  await waitFor(
    () => f.members.every((member) => member.received.filter((r) => r.path === "/api/tags").length >= 2),
    { message: "two probes at each member" },
  );
  assertEquals(f.members[0].received.every((r) => r.method === "GET"), true);
});

Deno.test("a stream broken mid-way ends with an error event, never a silent switch to another member", async () => {
  await using f = await fleet(2);
  const [a, b] = f.members;
  a.always({ cutAfterChunks: 2 });
  b.always({ cutAfterChunks: 2 });
  const text = await ok(await f.t.post("/v1/chat/completions", chat("cut", { stream: true })));
  assert(text.startsWith("data: "), text);
  assert(!text.includes("[DONE]"));
  assertMatch(text, /event: error\ndata: \{"error":\{"message":"Upstream is unreachable/);
  assertEquals(a.calls + b.calls, 1);
});

Deno.test("--route sends the models its glob matches to its own pool, and only those", async () => {
  const big = new FakeUpstream();
  await using f = await fleet(1, ["--route", `big-*=${big.url}`]);
  const [small] = f.members;
  try {
    await ok(await f.t.post("/v1/chat/completions", { ...chat("hi"), model: "big-70b" }));
    await ok(await f.t.post("/api/chat", { ...chat("hi"), model: "BIG-8b", stream: false }));
    await ok(await f.t.post("/v1/chat/completions", { ...chat("hi"), model: "small-1b" }));
    assertEquals(big.received.map((r) => JSON.parse(r.body).model), ["big-70b", "BIG-8b"]);
    assertEquals(small.received.map((r) => JSON.parse(r.body).model), ["small-1b"]);
  } finally {
    await big.close();
  }
});

Deno.test("affinity: a 3-turn conversation stays on one member; different conversations spread", async () => {
  await using f = await fleet(3);
  const turnsOf = (topic: string, system = "You are terse.") => {
    const messages = [{ role: "system", content: system }, { role: "user", content: `about ${topic}` }];
    return [1, 2, 3].map((turn) => {
      const sent = messages.map((message) => ({ ...message }));
      messages.push({ role: "assistant", content: `answer ${turn}` }, {
        role: "user",
        content: `more ${turn}`,
      });
      return { model: "m", messages: sent };
    });
  };
  const whoAnswered = (content: string) =>
    f.members.findIndex((member) => member.received.some((r) => r.body.includes(content)));
  const conversations = ["cats", "dogs", "owls", "bees", "eels", "yaks"];
  for (const topic of conversations) {
    for (const turn of turnsOf(topic)) await ok(await f.t.post("/v1/chat/completions", turn));
    const served = f.members.filter((member) =>
      member.received.some((r) => r.body.includes(`about ${topic}`))
    );
    assertEquals(served.length, 1, `${topic}: all three turns on one member`);
  }
  const used = new Set(conversations.map((topic) => whoAnswered(`about ${topic}`)));
  assertEquals(used.size, 3, "six conversations sharing only a system prompt use every member");
  const metrics = await (await fetch(`${f.t.url}/metrics`)).text();
  const hits = [...metrics.matchAll(/bridge_upstream_member_affinity_hits_total\{[^}]*\} (\d+)/g)]
    .reduce((sum, match) => sum + Number(match[1]), 0);
  assertEquals(hits, 12, "turns 2 and 3 of six conversations");
});

Deno.test("an overloaded member loses a conversation's turn to the least loaded one", async () => {
  await using f = await fleet(3);
  const opening = [{ role: "user", content: "sticky" }];
  const turn = (n: number) => ({
    model: "m",
    messages: [...opening, { role: "assistant", content: "x" }, { role: "user", content: `turn ${n}` }],
  });
  await ok(await f.t.post("/v1/chat/completions", { model: "m", messages: opening }));
  const home = f.members.find((member) => member.calls === 1)!;
  for (const member of f.members) member.always({ delayMs: 1500 });
  // Turns held at home: 0, 1, 2 outstanding are within 2 × the pool's mean (rounded up), so they stay...
  const held = [];
  for (let n = 1; n <= 3; n++) {
    held.push(f.t.post("/v1/chat/completions", turn(n)));
    await waitFor(() => home.calls === 1 + n, { message: `turn ${n} at its home member` });
  }
  // ...but with 3 outstanding there and none elsewhere (mean 1, bound 2), the next turn goes elsewhere.
  const moved = f.t.post("/v1/chat/completions", turn(4));
  await waitFor(() => f.members.some((member) => member !== home && member.calls === 1), {
    message: "turn 4 at another member",
  });
  assertEquals(home.calls, 4);
  await Promise.all([...held, moved].map(async (response) => ok(await response)));
});

Deno.test("GET /v1/models and /api/tags merge every pool's list, each model once", async () => {
  const big = new FakeUpstream({ models: ["big-70b", "shared"] });
  await using f = await fleet(1, ["--route", `big-*=${big.url}`], { models: ["small-1b", "shared"] });
  try {
    const models = await (await fetch(`${f.t.url}/v1/models`)).json();
    assertEquals(models.object, "list");
    assertEquals(models.data.map((entry: { id: string }) => entry.id), ["small-1b", "shared", "big-70b"]);
    const tags = await (await fetch(`${f.t.url}/api/tags`)).json();
    assertEquals(
      tags.models.map((entry: { name: string }) => entry.name),
      ["small-1b:latest", "shared:latest", "big-70b:latest"],
    );
    // A route answering with an error, twice (its unread answer must not hold the connection), is left out.
    big.plan({ status: 500 }, { status: 500 });
    for (let i = 0; i < 2; i++) {
      const failing = await (await fetch(`${f.t.url}/v1/models`)).json();
      assertEquals(failing.data.map((entry: { id: string }) => entry.id), ["small-1b", "shared"]);
    }
    // A dead route is left out too; the default pool's list still comes.
    await big.close();
    const without = await (await fetch(`${f.t.url}/v1/models`)).json();
    assertEquals(without.data.map((entry: { id: string }) => entry.id), ["small-1b", "shared"]);
  } finally {
    await big.close().catch(() => {});
  }
});

Deno.test("/ready stays ready with a dead route, not with a dead default pool; /upstreams hides user:password", async () => {
  const route = new FakeUpstream();
  const routeUrl = route.url;
  await route.close();
  const upstream = new FakeUpstream();
  const withUser = upstream.url.replace("http://", "http://ops:hunter2@");
  await using t = await startTestBridge(
    ["--route", `r*=${routeUrl}`, "--health-interval", "200", "--metrics-key", "mk"],
    { upstreamUrl: withUser, sharedUpstream: upstream },
  );
  try {
    assertEquals((await fetch(`${t.url}/upstreams`)).status, 401);
    const view = () =>
      fetch(`${t.url}/upstreams`, { headers: { authorization: "Bearer mk" } }).then((r) => r.json());
    await waitFor(async () => (await view()).some((state: { healthy: boolean }) => !state.healthy), {
      message: "the dead route probed",
    });
    const states = await view();
    assertEquals(states.map((state: { url: string; pool: string }) => [state.url, state.pool]), [
      [routeUrl, "r*"],
      [upstream.url, "default"],
    ]);
    assert(!JSON.stringify(states).includes("hunter2"));
    assertEquals(Object.keys(states[0]).sort(), ["cooldownUntil", "healthy", "inflight", "pool", "url"]);
    assertEquals((await fetch(`${t.url}/ready`)).status, 200);
    await upstream.close();
    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 503, {
      message: "/ready 503 once the default pool's only member fails its probe",
    });
  } finally {
    await upstream.close().catch(() => {});
  }
});
