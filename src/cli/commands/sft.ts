import type { Command } from "commander";
import {
  kebab,
  parseFlagValue,
  resolveSftConfig,
  SFT_DEFAULTS,
  SFT_FIELDS,
  type SftConfig,
  settingKind,
} from "../../sft/config.js";
import { resolveResumeConfig, runSft } from "../../sft/run.js";
import { InputError } from "../../util/errors.js";

const HELP: Partial<Record<keyof SftConfig, string>> = {
  data: "training data (SteerLM JSONL)",
  val: "validation data (SteerLM JSONL)",
  output: "run directory (settings, tokenizer, checkpoints, metrics, loss.png)",
  init: "train a new model from this model config (JSON/YAML), with a tokenizer trained on the data",
  model:
    "start from this Llama-family GGUF or Hugging Face directory (safetensors + config.json + tokenizer.json)",
  lora: "train LoRA adapters on the frozen --model",
  loraTargets: "comma-separated: q,k,v,o,gate,up,down",
  steps: "optimiser steps (0: --epochs passes over the data)",
  attributeTokens: "one token per attribute setting (humor:4) in a tokenizer trained with --init",
};

export function register(program: Command): void {
  const cmd = program
    .command("sft")
    .summary("attribute-conditioned SFT: train on SteerLM JSONL (new model, GGUF, LoRA), checkpoint, resume")
    .description(
      "Attribute-conditioned SFT: train a model on SteerLM JSONL with loss on the responses only.\n" +
        "Settings come from --config (YAML or JSON, camelCase keys as the flags below), flags override them;\n" +
        "every effective setting is printed at start. Ctrl-C writes a checkpoint and exits; --resume continues\n" +
        "bit-exactly from the newest checkpoint of -o.",
    )
    .option("--config <file>", "settings file (YAML or JSON)")
    .option("--resume", "continue the run in -o from its newest checkpoint (its stored settings apply)");
  for (const key of SFT_FIELDS) {
    const flag = key === "output" ? "-o, --output" : `--${kebab(key)}`;
    if (settingKind(key) === "bool" && SFT_DEFAULTS[key as keyof typeof SFT_DEFAULTS] === true) {
      cmd.option(`--no-${kebab(key)}`, `turn off: ${HELP[key] ?? key}`);
    } else if (settingKind(key) === "bool") cmd.option(flag, HELP[key] ?? key);
    else cmd.option(`${flag} <value>`, HELP[key] ?? key);
  }
  cmd.action(async (raw: Record<string, string | boolean | undefined>) => {
    const flags: Partial<Record<keyof SftConfig, unknown>> = {};
    for (const key of SFT_FIELDS) {
      // only what the user typed: commander fills defaults for --no-* options
      const v = raw[key];
      if (v !== undefined && cmd.getOptionValueSource(key) === "cli") flags[key] = parseFlagValue(key, v);
    }
    let resolved: ReturnType<typeof resolveSftConfig>;
    if (raw.resume) {
      if (typeof flags.output !== "string")
        throw new InputError("--resume needs -o <run directory>", { field: "--output" });
      if (raw.config)
        throw new InputError("a resumed run keeps its stored settings; drop --config", { field: "--config" });
      resolved = resolveResumeConfig(flags.output, flags);
    } else {
      resolved = resolveSftConfig(flags, typeof raw.config === "string" ? raw.config : undefined);
    }
    const controller = new AbortController();
    const onSigint = () => {
      if (controller.signal.aborted) process.exit(130); // a second Ctrl-C does not wait
      process.stderr.write("\nsteerlm sft: interrupted, writing a checkpoint...\n");
      controller.abort();
    };
    process.on("SIGINT", onSigint);
    try {
      const result = await runSft(resolved, { resume: Boolean(raw.resume), signal: controller.signal });
      process.stdout.write(
        `${JSON.stringify({ checkpoint: result.checkpoint, step: result.step, trainLoss: result.trainLoss, valLoss: result.valLoss })}\n`,
      );
      if (result.interrupted) process.exitCode = 130;
    } finally {
      process.off("SIGINT", onSigint);
    }
  });
}
