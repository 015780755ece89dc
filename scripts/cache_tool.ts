/**
 * Cache housekeeping on a stopped bridge: `deno task cache:purge [--model M | --key K]` removes answers (all of
 * them by default); `deno task cache:compact` rewrites the store into a fresh file so its size follows what is
 * stored (Deno KV, SQLite underneath, keeps the pages it frees). Both take `--cache-dir` (default ./cache) and
 * refuse to run while a bridge has the store open.
 */
import { join } from "node:path";
import { DiskTier, type PurgeFilter } from "../src/cache/disk.ts";

const args = Deno.args;
const option = (name: string) => {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
};
const command = args[0];
const dir = option("--cache-dir") ?? "./cache";
const path = join(dir, "cache.kv");

function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(2);
}

/** The bridge writes its pid beside the store while it has it open; a live pid means hands off. */
function refuseIfRunning(): void {
  let pid: number;
  try {
    pid = Number(Deno.readTextFileSync(join(dir, "bridge.pid")).trim());
  } catch {
    return;
  }
  try {
    Deno.statSync(`/proc/${pid}`);
  } catch {
    return; // a pid file left by a bridge that is gone
  }
  fail(`a bridge (pid ${pid}) has ${dir} open: stop it first (or use POST /admin/cache/purge on it)`);
}

if (command !== "purge" && command !== "compact") {
  fail("usage: cache_tool.ts purge|compact [--cache-dir DIR]");
}
try {
  Deno.statSync(path);
} catch {
  fail(`no cache store at ${path}`);
}
refuseIfRunning();

if (command === "purge") {
  const model = option("--model");
  const key = option("--key");
  const filter: PurgeFilter = model ? { model } : key ? { key } : { all: true };
  const kv = await Deno.openKv(path);
  const disk = await DiskTier.open(kv, { maxEntries: Number.MAX_SAFE_INTEGER });
  const purged = await disk.purge(filter);
  kv.close();
  console.log(`purged ${purged} answer(s) from ${path}`);
} else {
  const before = Deno.statSync(path).size;
  const fresh = `${path}.compacting`;
  for (const leftover of [fresh, `${fresh}-wal`, `${fresh}-shm`]) await Deno.remove(leftover).catch(() => {});
  const from = await Deno.openKv(path);
  const to = await Deno.openKv(fresh);
  let op = to.atomic();
  let mutations = 0;
  let bytes = 0;
  let copied = 0;
  const flush = async () => {
    if (!mutations) return;
    if (!(await op.commit()).ok) fail("the fresh store refused a write");
    op = to.atomic();
    mutations = bytes = 0;
  };
  // Everything under "cache": entries, their parts and order keys, the sums and the format. KV's own expiry
  // timestamps are not listed, so entries past their expiry are left behind (they would read as misses anyway).
  const now = Date.now();
  for await (const entry of from.list<unknown>({ prefix: [] }, { batchSize: 500 })) {
    const value = entry.value as { expiresAt?: number } | undefined;
    if (entry.key[0] === "cache" && entry.key[1] === "i" && (value?.expiresAt ?? Infinity) <= now) continue;
    const size = approximateSize(entry.value);
    if (mutations >= 500 || bytes + size > 700 * 1024) await flush();
    op.set(entry.key, entry.value);
    mutations++;
    bytes += size;
    if (entry.key[0] === "cache" && entry.key[1] === "i") copied++;
  }
  await flush();
  from.close();
  to.close();
  for (const suffix of ["-wal", "-shm"]) await Deno.remove(`${path}${suffix}`).catch(() => {});
  await Deno.rename(fresh, path);
  for (const suffix of ["-wal", "-shm"]) await Deno.remove(`${fresh}${suffix}`).catch(() => {});
  if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
  const after = Deno.statSync(path).size;
  console.log(`compacted ${path}: ${copied} answer(s) kept, ${before} -> ${after} bytes`);
}

/** About how many bytes a value takes in a KV write: its byte arrays (an answer inline), plus a margin. */
function approximateSize(value: unknown): number {
  if (value instanceof Uint8Array) return value.length + 64;
  if (value && typeof value === "object") {
    let size = 256;
    for (const item of Object.values(value)) if (item instanceof Uint8Array) size += item.length;
    return size;
  }
  return 64;
}
