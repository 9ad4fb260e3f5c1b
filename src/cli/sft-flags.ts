import { type Command, Option } from "commander";
import { type ResolvedSftConfig, resolveResumeConfig, resolveSftConfig } from "../run/config.js";
import type { RunResult } from "../run/loop.js";
import {
  flagName,
  parseSettingText,
  SETTINGS,
  type Setting,
  type SettingName,
  SFT_DEFAULTS,
  type SftConfig,
} from "../run/settings.js";
import { InputError } from "../util/errors.js";
import { optionForSetting } from "./flags.js";

/**
 * The run settings as command-line flags, shared by `steerlm sft`, `steerlm apm train` and `steerlm
 * steerlm2 train`: one option per setting, named, described and defaulted by SETTINGS (`--no-x` for
 * settings on by default), plus `--config` and `--resume` added by the caller. `help` replaces a
 * setting's description where a job reads it differently (the APM's data formats). Returns a function that
 * resolves the effective settings from the parsed options.
 */
export function addSftSettingFlags(
  cmd: Command,
  fields: readonly SettingName[],
  help: Partial<Record<SettingName, string>> = {},
): (raw: Record<string, string | boolean | undefined>) => ResolvedSftConfig {
  // commander's attribute name of each flag (`--compute` → compute)
  const attr = (key: SettingName) =>
    flagName(key)
      .slice(2)
      .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  for (const key of fields) {
    const spec: Setting = SETTINGS[key];
    const text = help[key] ?? spec.help;
    const fallback = (SFT_DEFAULTS as Partial<SftConfig>)[key];
    const shown = fallback === null || fallback === undefined ? "" : ` (default ${String(fallback)})`;
    const flag = spec.short ? `-${spec.short}, ${flagName(key)}` : flagName(key);
    if (spec.kind !== "bool") {
      cmd.addOption(optionForSetting(new Option(`${flag} <value>`, `${text}${shown}`), key));
      continue;
    }
    // both spellings, so that a flag overrides a --config file either way
    cmd.addOption(optionForSetting(new Option(flag, `${text}${fallback === true ? " (default)" : ""}`), key));
    const off = `turn off: ${text}${fallback === true ? "" : " (default)"}`;
    cmd.addOption(optionForSetting(new Option(`--no-${flagName(key).slice(2)}`, off), key));
  }
  return (raw) => {
    const flags: Partial<Record<SettingName, unknown>> = {};
    for (const key of fields) {
      // only what the user typed: commander fills defaults for --no-* options
      const v = raw[attr(key)];
      if (v !== undefined && cmd.getOptionValueSource(attr(key)) === "cli")
        flags[key] = parseSettingText(key, v);
    }
    if (!raw.resume) return resolveSftConfig(flags, typeof raw.config === "string" ? raw.config : undefined);
    if (typeof flags.output !== "string")
      throw new InputError("--resume needs -o <run directory>", { setting: "output" });
    if (raw.config)
      throw new InputError("a resumed run keeps its stored settings; drop --config", { setting: "config" });
    return resolveResumeConfig(flags.output, flags);
  };
}

/** The signals a training job checkpoints on, and its exit status after each (128 + the number). */
const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * Runs a training job with Ctrl-C, SIGTERM (schedulers: slurm, Kubernetes, docker stop) and SIGHUP (a closed
 * terminal) wired to its abort signal: the first asks the run to write a checkpoint and stop, a second one
 * exits at once. Prints its JSON summary, the checkpoint under `key`; an interrupted run exits 128 + the
 * signal's number (130 for Ctrl-C).
 */
export async function runTrainingJob(
  label: string,
  run: (signal: AbortSignal) => Promise<RunResult>,
  key = "checkpoint",
): Promise<void> {
  const controller = new AbortController();
  let status = 130;
  const handlers = Object.entries(STOP_SIGNALS).map(([name, code]) => {
    const handler = () => {
      if (controller.signal.aborted) process.exit(code); // a second signal does not wait
      status = code;
      process.stderr.write(`\n${label}: interrupted (${name}), writing a checkpoint...\n`);
      controller.abort();
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  let r: RunResult;
  try {
    r = await run(controller.signal);
  } finally {
    for (const [name, handler] of handlers) process.off(name, handler);
  }
  process.stdout.write(
    `${JSON.stringify({ [key]: r.checkpoint, step: r.step, trainLoss: r.trainLoss, valLoss: r.valLoss })}\n`,
  );
  if (r.interrupted) process.exitCode = status;
}
