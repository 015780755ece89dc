/**
 * Runs a bridge on a socket and stops it gracefully: readiness turns 503, the listener closes, in-flight
 * requests and streams finish; at the drain deadline the streams still open end with an error event.
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

export async function startBridge(config: Config, deps: BridgeDependencies): Promise<RunningBridge> {
  const bridge = await createBridge(config, deps);
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: config.listen.hostname,
        port: config.listen.port,
        onListen: (address) => {
          const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
          resolve({ bridge, url: `http://${host}:${address.port}`, stop });
        },
      }, bridge.app.fetch);
    } catch (error) {
      bridge.close().finally(() => reject(error));
      return;
    }

    let stopping: Promise<void> | undefined;
    function stop(): Promise<void> {
      stopping ??= (async () => {
        bridge.lifecycle.startDraining();
        const closed = server.shutdown();
        const drained = await Promise.race([
          closed.then(() => true),
          sleep(config.shutdownTimeoutMs).then(() => false),
        ]);
        if (!drained) {
          bridge.lifecycle.expire();
          await Promise.race([closed, sleep(FINAL_FLUSH_MS)]);
        }
        await bridge.close();
      })();
      return stopping;
    }
  });
}
