/**
 * Runs a bridge on a socket and stops it gracefully: readiness turns 503, the listener closes, in-flight
 * requests and streams finish; at the drain deadline the streams still open end with an error event; answers on
 * their way into the cache and async jobs' results are written before the stores close.
 *
 * A connection flood must not end the process: when the descriptors run out, Deno.serve's accept loop ends
 * (`finished` rejects with "Too many open files") and, unhandled, that would exit. The listener is opened again
 * on the same address as soon as the system lets it, with one warning a minute and a metric; the connections
 * the old listener accepted keep being served.
 */
import type { Config } from "../config/index.ts";
import { type Bridge, type BridgeDependencies, createBridge } from "./app.ts";
import { sleep } from "../core/time.ts";

export interface RunningBridge {
  readonly bridge: Bridge;
  /** The base URL the bridge listens on, such as `http://127.0.0.1:3000`. */
  readonly url: string;
  /** Drains and stops; resolves once the server is closed. */
  stop(): Promise<void>;
}

/** How long streams get to deliver their error event after the drain deadline. */
const FINAL_FLUSH_MS = 250;
/** Waits between attempts to listen again after the accept loop ended, growing to the last. */
const RELISTEN_DELAYS_MS = [100, 200, 500, 1000, 2000];
const WARN_EVERY_MS = 60_000;

export async function startBridge(config: Config, deps: BridgeDependencies): Promise<RunningBridge> {
  const bridge = await createBridge(config, deps);
  const { log } = deps;
  const servers = new Set<Deno.HttpServer<Deno.NetAddr>>();
  let stopping: Promise<void> | undefined;
  let lastWarning = -Infinity;

  /** Listens on `port` (Deno.serve binds before it returns, and throws if it cannot). */
  const listen = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const server = Deno.serve({ hostname: config.listen.hostname, port, onListen() {} }, bridge.handle);
    servers.add(server);
    server.finished.then(() => servers.delete(server), (error) => relisten(server, port, error));
    return server;
  };

  /** The accept loop of `server` ended with `error` (descriptors ran out): listen again on the same port. */
  async function relisten(
    server: Deno.HttpServer<Deno.NetAddr>,
    port: number,
    error: unknown,
  ): Promise<void> {
    servers.delete(server);
    if (stopping) return;
    bridge.metrics.listenerRestarts.inc();
    if (performance.now() - lastWarning > WARN_EVERY_MS) {
      lastWarning = performance.now();
      log.warn("the listener stopped accepting connections; listening again as soon as descriptors allow", {
        error: error instanceof Error ? error.message : String(error),
        hint:
          "raise the open-file limit (ulimit -n, LimitNOFILE=) or put a proxy with connection limits in front",
      });
    }
    for (let attempt = 0; !stopping; attempt++) {
      await sleep(RELISTEN_DELAYS_MS[Math.min(attempt, RELISTEN_DELAYS_MS.length - 1)]);
      if (stopping) return;
      try {
        listen(port);
        log.info("listening again", { port, attempts: attempt + 1 });
        return;
      } catch {
        // Still no descriptor, or the port is not free yet: wait longer.
      }
    }
  }

  let first: Deno.HttpServer<Deno.NetAddr>;
  try {
    first = listen(config.listen.port);
  } catch (error) {
    await bridge.close();
    throw error;
  }
  const address = first.addr;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;

  function stop(): Promise<void> {
    stopping ??= (async () => {
      const started = performance.now();
      bridge.lifecycle.startDraining();
      const closed = Promise.allSettled([...servers].map((server) => server.shutdown()));
      const drained = await Promise.race([
        closed.then(() => true),
        sleep(config.shutdownTimeoutMs).then(() => false),
      ]);
      if (!drained) {
        bridge.lifecycle.expire();
        await Promise.race([closed, sleep(FINAL_FLUSH_MS)]);
      }
      const left = config.shutdownTimeoutMs - (performance.now() - started);
      await bridge.close(Math.max(FINAL_FLUSH_MS, left));
    })();
    return stopping;
  }

  return { bridge, url: `http://${host}:${address.port}`, stop };
}
