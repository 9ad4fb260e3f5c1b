import type { Command } from "commander";
import {
  flagName,
  parseFlagValue,
  type ResolvedSftConfig,
  resolveSftConfig,
  SFT_DEFAULTS,
  type SftConfig,
  settingKind,
} from "../run/config.js";
import { resolveResumeConfig } from "../run/run.js";
import { InputError } from "../util/errors.js";

/**
 * The SFT settings as command-line flags, shared by `steerlm sft` and `steerlm apm train`: one option per
 * setting (`-o, --output`, `--no-x` for settings on by default), plus `--config` and `--resume` added by
 * the caller. Returns a function that resolves the effective settings from the parsed options.
 */
export function addSftSettingFlags(
  cmd: Command,
  fields: readonly (keyof SftConfig)[],
  help: Partial<Record<keyof SftConfig, string>>,
): (raw: Record<string, string | boolean | undefined>) => ResolvedSftConfig {
  // commander's attribute name of each flag (`--compute` → compute)
  const attr = (key: keyof SftConfig) =>
    flagName(key)
      .slice(2)
      .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  for (const key of fields) {
    const flag = key === "output" ? "-o, --output" : flagName(key);
    if (settingKind(key) === "bool" && SFT_DEFAULTS[key as keyof typeof SFT_DEFAULTS] === true) {
      cmd.option(`--no-${flagName(key).slice(2)}`, `turn off: ${help[key] ?? key}`);
    } else if (settingKind(key) === "bool") cmd.option(flag, help[key] ?? key);
    else cmd.option(`${flag} <value>`, help[key] ?? key);
  }
  return (raw) => {
    const flags: Partial<Record<keyof SftConfig, unknown>> = {};
    for (const key of fields) {
      // only what the user typed: commander fills defaults for --no-* options
      const v = raw[attr(key)];
      if (v !== undefined && cmd.getOptionValueSource(attr(key)) === "cli")
        flags[key] = parseFlagValue(key, v);
    }
    if (!raw.resume) return resolveSftConfig(flags, typeof raw.config === "string" ? raw.config : undefined);
    if (typeof flags.output !== "string")
      throw new InputError("--resume needs -o <run directory>", { field: "--output" });
    if (raw.config)
      throw new InputError("a resumed run keeps its stored settings; drop --config", { field: "--config" });
    return resolveResumeConfig(flags.output, flags);
  };
}

/**
 * Runs a training job with Ctrl-C wired to its abort signal: the first Ctrl-C asks the run to write a
 * checkpoint and stop, a second one exits at once (130).
 */
export async function withInterrupt<T>(label: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130); // a second Ctrl-C does not wait
    process.stderr.write(`\n${label}: interrupted, writing a checkpoint...\n`);
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    return await run(controller.signal);
  } finally {
    process.off("SIGINT", onSigint);
  }
}
