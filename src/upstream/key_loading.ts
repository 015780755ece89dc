/** Reads shared mode's keys from the command line and the key files (at start and on every SIGHUP). */
import type { SharedSettings } from "../config/index.ts";
import { type AccessKey, parseAccessKeys, readKeyLines } from "./keys.ts";

export interface LoadedKeys {
  apiKeys: string[];
  accessKeys: AccessKey[];
}

export async function loadKeys(settings: SharedSettings): Promise<LoadedKeys> {
  const fileLines = async (path?: string) => path ? readKeyLines(await Deno.readTextFile(path)) : [];
  return {
    apiKeys: [...settings.apiKeys, ...await fileLines(settings.apiKeysFile)],
    accessKeys: parseAccessKeys([...settings.accessKeys, ...await fileLines(settings.accessKeysFile)]),
  };
}
