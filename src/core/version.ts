/** The program's version, read from deno.json so there is one place to change it. */
import manifest from "../../deno.json" with { type: "json" };

export const VERSION: string = manifest.version;
export const PRODUCT = "deepseek-ollama-bridge";
