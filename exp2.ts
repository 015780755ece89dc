import { parseConfig } from "./src/config/index.ts";
import { createLogger } from "./src/log.ts";
import { createBridge } from "./src/server.ts";
const mode = Deno.args[0];
const config = parseConfig(["-o", "http://127.0.0.1:18100"], {});
const log = createLogger({ sink: { write() {} } });
const bridge = createBridge(config, { log });
if (mode === "nolog") { for (const k of ["info", "debug"] as const) (log as any)[k] = () => {}; }
Deno.serve({ port: 18102, onListen() {} }, bridge.app.fetch);
