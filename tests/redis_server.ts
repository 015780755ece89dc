/**
 * A real `redis-server` for the tests: started on a free loopback port with no persistence, stopped when
 * disposed; it can be stopped and started again on the same port (an outage). Where redis-server is missing, a
 * developer's run skips the Redis tests with a visible message; CI (`CI` set) fails them instead.
 */
import { createClient } from "redis";
import { freePort } from "./harness.ts";
import { waitFor } from "./assert.ts";

export interface TestRedis extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  /** Stops the server (the outage); `start` brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP: every command hangs, a slow Redis) until `resume` (SIGCONT). */
  pause(): void;
  resume(): void;
  /** Every key and its value (strings, hashes and streams dumped as text), as an operator's SCAN sees them. */
  dump(): Promise<Map<string, string>>;
}

export function redisServerPath(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin", "/usr/sbin"])) {
    try {
      Deno.statSync(`${dir}/redis-server`);
      return `${dir}/redis-server`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const found = redisServerPath();
if (!found && !Deno.env.get("CI")) {
  console.warn(
    "redis-server not found: the Redis (--redis-url) tests are skipped (apt-get install redis-server)",
  );
}

/** A Deno.test that needs Redis: skipped with a message on a developer machine without it, failed in CI. */
export function redisTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: !found && !Deno.env.get("CI"),
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

/**
 * Starts a redis-server; `extra` are more of its arguments (such as `--maxmemory-policy allkeys-lru`), where
 * `{port}` stands for the port it listens on (`--port 0 --tls-port {port}` for TLS only).
 */
export async function startRedis(...extra: string[]): Promise<TestRedis> {
  if (!found) throw new Error("redis-server is not installed (apt-get install -y redis-server)");
  const port = freePort();
  let process: Deno.ChildProcess | undefined;
  const start = async () => {
    process = new Deno.Command(found, {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        ...extra.map((arg) => arg.replace("{port}", String(port))),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitFor(async () => {
      try {
        const connection = await Deno.connect({ hostname: "127.0.0.1", port });
        connection.close();
        return true;
      } catch {
        return false;
      }
    }, { message: "redis-server listening" });
  };
  const stop = async () => {
    if (!process) return;
    process.kill("SIGCONT"); // a paused server must be able to die
    process.kill("SIGKILL");
    await process.status;
    process = undefined;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    stop,
    start,
    pause: () => process?.kill("SIGSTOP"),
    resume: () => process?.kill("SIGCONT"),
    dump: () => dump(`redis://127.0.0.1:${port}/0`),
    [Symbol.asyncDispose]: stop,
  };
}

async function dump(url: string): Promise<Map<string, string>> {
  const client = createClient({ url });
  await client.connect();
  const found = new Map<string, string>();
  try {
    for await (const names of client.scanIterator({ COUNT: 1000 })) {
      for (const name of names) {
        const type = await client.type(name);
        const value = type === "string"
          ? await client.get(name)
          : type === "hash"
          ? JSON.stringify(await client.hGetAll(name))
          : type === "stream"
          ? JSON.stringify(await client.xRange(name, "-", "+"))
          : type;
        found.set(name, String(value));
      }
    }
  } finally {
    await client.close();
  }
  return found;
}
