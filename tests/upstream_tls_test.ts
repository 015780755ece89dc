/**
 * https upstreams signed by a private CA made in the test: trusted through --upstream-ca-file (both transports)
 * or Deno's own DENO_CERT, refused without either.
 */
import { assertEquals, assertMatch } from "./assert.ts";
import { spawnBridge, startTestBridge } from "./harness.ts";
import { response, ScriptedUpstream } from "./scripted_upstream.ts";
import { privateCa } from "./private_ca.ts";

const ANSWER = '{"id":"tls","object":"chat.completion","choices":[]}';
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });

for (const transport of ["pool", "fetch"]) {
  Deno.test(`https upstream with a private CA through --upstream-ca-file (${transport})`, async () => {
    const ca = await privateCa();
    await using upstream = new ScriptedUpstream(() => response(200, ANSWER), ca);
    const url = `https://localhost:${upstream.port}`;
    {
      await using t = await startTestBridge(
        ["--upstream-client", transport, "--upstream-ca-file", ca.caFile],
        {
          upstreamUrl: url,
        },
      );
      for (let i = 0; i < 2; i++) {
        const answer = await t.post("/v1/chat/completions", CHAT);
        assertEquals((await answer.json()).id, "tls");
      }
    }
    {
      // Without the CA the certificate is refused: a 502, and nothing reaches the upstream's handler.
      await using t = await startTestBridge(["--upstream-client", transport], { upstreamUrl: url });
      const refused = await t.post("/v1/chat/completions", CHAT);
      assertEquals(refused.status, 502);
      assertMatch((await refused.json()).error.message, /certificate|UnknownIssuer|invalid peer/i);
    }
    assertEquals(upstream.count("POST"), 2);
    await Deno.remove(ca.dir, { recursive: true });
  });
}

Deno.test("https upstream trusted through DENO_CERT, with no flag", async () => {
  const ca = await privateCa();
  await using upstream = new ScriptedUpstream(() => response(200, ANSWER), ca);
  const bridge = await spawnBridge({ env: { DENO_CERT: ca.caFile } }, `https://localhost:${upstream.port}`);
  try {
    const answer = await fetch(`${bridge.url}/v1/chat/completions`, { method: "POST", body: CHAT });
    assertEquals((await answer.json()).id, "tls");
  } finally {
    bridge.process.kill("SIGTERM");
    await bridge.process.status;
    await Deno.remove(ca.dir, { recursive: true });
  }
});

Deno.test("--upstream-ca-file that cannot be read stops the start with a clear message", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/not-a-cert.pem`, "hello");
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "--listen", "127.0.0.1:0", "--upstream-ca-file", `${dir}/not-a-cert.pem`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(output.code, 1);
  assertMatch(
    new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr),
    /holds no PEM certificate/,
  );
  await Deno.remove(dir, { recursive: true });
});
