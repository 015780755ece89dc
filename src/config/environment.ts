/**
 * The environment's part of the command line: every flag's `BRIDGE_*` variable, read from the environment handed
 * to parseConfig (never the process's own), with the flag's own parser; and the exit a bad value causes.
 */
import { type Command, InvalidArgumentError, type Option } from "commander";
import { switchValue } from "./values.ts";

/** The environment variable of an option: `BRIDGE_` and its long name, such as `BRIDGE_RATE_LIMIT`. */
export function envName(option: Option): string {
  return `BRIDGE_${option.long!.slice(2).toUpperCase().replaceAll("-", "_")}`;
}

/** Thrown when the command line asks the program to exit: for help, version or a bad value. */
export class ConfigExit extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

export function withEnvName(description: string, name: string): string {
  return description.endsWith(")")
    ? `${description.slice(0, -1)}, env: ${name})`
    : `${description} (env: ${name})`;
}

/**
 * Fills every option not given on the command line from its `BRIDGE_*` variable in `env`, with the flag's own
 * parser; switches read `1/true/yes/on` and `0/false/no/off`. A bad value is the same exit-2 error a bad flag gets.
 */
export function readEnvironment(program: Command, env: Record<string, string | undefined>): void {
  for (const option of program.options) {
    const name = option.attributeName();
    const variable = envName(option);
    const raw = env[variable];
    if (raw === undefined || program.getOptionValueSource(name) === "cli") continue;
    try {
      const value = option.isBoolean()
        ? switchValue(raw)
        : option.parseArg
        ? option.parseArg(raw, undefined)
        : raw;
      program.setOptionValueWithSource(name, value, "env");
    } catch (error) {
      if (!(error instanceof InvalidArgumentError)) throw error;
      throw new ConfigExit(
        2,
        `error: option '${option.flags}' value '${raw}' from env '${variable}' is invalid. ${error.message}`,
      );
    }
  }
}
