/** Starting and stopping the processes a benchmark measures, pinned to a core when `taskset` is there. */

export const hasTaskset = await commandExists("taskset");

export async function commandExists(name: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** A free loopback port (bound and released at once). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export interface Proc {
  readonly pid: number;
  stop(): Promise<void>;
  /** CPU time (user + system) the process has used, in ms. */
  cpuMs(): number;
}

const CLOCK_TICKS_PER_SECOND = 100;

/** Spawns `args` (pinned to `core` if possible) and waits until `port` accepts connections. */
export async function spawn(args: string[], port: number, core?: number): Promise<Proc> {
  const [command, ...rest] = core !== undefined && hasTaskset
    ? ["taskset", "-c", String(core), ...args]
    : args;
  const child = new Deno.Command(command, { args: rest, stdout: "null", stderr: "inherit", stdin: "null" })
    .spawn();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${args.join(" ")} did not listen on ${port} within 15 s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    },
    cpuMs() {
      try {
        const fields = Deno.readTextFileSync(`/proc/${child.pid}/stat`).split(") ")[1].split(" ");
        return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
      } catch {
        return NaN; // not Linux
      }
    },
  };
}

/** `deno run` with the given permissions and arguments. */
export function denoArgs(script: string, ...args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-run",
    script,
    ...args,
  ];
}

/**
 * Deno scripts started on free ports and stopped together: `await using servers = new Servers()`, then
 * `servers.start(core, "main.ts", "--listen", "127.0.0.1:{port}")`, where `{port}` stands for the port chosen.
 */
export class Servers implements AsyncDisposable {
  readonly #procs: Proc[] = [];
  readonly #byPort = new Map<number, Proc>();

  /** CPU time (user + system) the server on `port` has used, in ms. */
  cpuMs(port: number): number {
    return this.#byPort.get(port)?.cpuMs() ?? NaN;
  }

  /** Starts the Deno `script` pinned to `core` and resolves with its port once it listens. */
  start(core: number, script: string, ...args: string[]): Promise<number> {
    return this.startProgram(core, denoArgs(script, ...args));
  }

  /** Starts any program (`command` and its arguments) pinned to `core`; resolves with its port once it listens. */
  async startProgram(core: number, command: string[]): Promise<number> {
    const port = freePort();
    const proc = await spawn(command.map((arg) => arg.replaceAll("{port}", String(port))), port, core);
    this.#procs.push(proc);
    this.#byPort.set(port, proc);
    return port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const proc of this.#procs) await proc.stop();
  }
}
