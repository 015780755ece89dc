/**
 * Opens a Deno KV store that only the bridge's user can read: answers may hold anything a client asked, and
 * async jobs may hold a client's credential. The folder is created 0700; the store's files (SQLite and its
 * -wal/-shm companions) are set to 0600. A folder the operator made is left as it is (it may be shared), and the
 * start-up log says if others can enter it.
 */
import { join } from "node:path";
import type { Logger } from "../observe/log.ts";

const POSIX = Deno.build.os !== "windows";

export async function openPrivateKv(dir: string, file: string, log: Logger): Promise<Deno.Kv> {
  let created = false;
  try {
    await Deno.mkdir(dir, { mode: 0o700 });
    created = true;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      created = true;
    }
  }
  if (POSIX && created) await Deno.chmod(dir, 0o700); // mkdir's mode is reduced by the umask
  if (POSIX && !created) {
    const mode = (await Deno.stat(dir)).mode ?? 0;
    if (mode & 0o077) {
      log.warn("the cache folder can be entered by other users; its files are kept 0600", {
        dir,
        mode: (mode & 0o777).toString(8),
      });
    }
  }
  const path = join(dir, file);
  const kv = await Deno.openKv(path);
  if (POSIX) {
    for (const name of [path, `${path}-wal`, `${path}-shm`]) {
      await Deno.chmod(name, 0o600).catch(() => {}); // -wal and -shm exist only while the store is open
    }
  }
  return kv;
}
