import type { Command } from "commander";
import { SFT_FIELDS, type SftConfig } from "../../run/config.js";
import { runSft } from "../../run/run.js";
import { addSftSettingFlags, withInterrupt } from "../sft-flags.js";

const HELP: Partial<Record<keyof SftConfig, string>> = {
  data: "training data (SteerLM JSONL)",
  val: "validation data (SteerLM JSONL)",
  output: "run directory (settings, tokenizer, checkpoints, metrics, loss.png)",
  init: "train a new model from this model config (JSON/YAML), with a tokenizer trained on the data",
  model:
    "start from this Llama-family GGUF or Hugging Face directory (safetensors + config.json + tokenizer.json)",
  lora: "train LoRA adapters on the frozen --model",
  loraTargets: "comma-separated: q,k,v,o,gate,up,down",
  frozen: "storage of the frozen base under --lora: f32|f16|bf16|q8_0 (default: the base GGUF's own)",
  computeType:
    "f32|bf16: bf16 = mixed precision (bfloat16 GEMMs; f32 weights, gradients, AdamW), faster on AVX512-BF16 CPUs; config key computeType (default f32)",
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
  const resolve = addSftSettingFlags(cmd, SFT_FIELDS, HELP);
  cmd.action(async (raw: Record<string, string | boolean | undefined>) => {
    const resolved = resolve(raw);
    const result = await withInterrupt("steerlm sft", (signal) =>
      runSft(resolved, { resume: Boolean(raw.resume), signal }),
    );
    process.stdout.write(
      `${JSON.stringify({ checkpoint: result.checkpoint, step: result.step, trainLoss: result.trainLoss, valLoss: result.valLoss })}\n`,
    );
    if (result.interrupted) process.exitCode = 130;
  });
}
