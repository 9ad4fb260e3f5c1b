import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchFile, writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";

/** A few dozen SteerBench conversations and a tiny model config, written into `dir`. */
export function tinySftInputs(dir: string, n = 60): { train: string; val: string; init: string } {
  writeBench(dir, synthesize({ n, seed: 7, multiTurnFraction: 0.1 }));
  const init = join(dir, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\ncontextLength: 256\n");
  return { train: benchFile(dir, "train"), val: benchFile(dir, "validation"), init };
}

/** The data and batch shape of every tiny run: the inputs, 4 sequences of 128 tokens, one thread. */
export function tinyRunFlags(inputs: { train: string; val: string }): string[] {
  return [
    "--data",
    inputs.train,
    "--val",
    inputs.val,
    "--seq-len",
    "128",
    "--batch-size",
    "4",
    "--threads",
    "1",
  ];
}

/** A rank-4 LoRA (alpha 8) on `targets`, e.g. "q,v,up". */
export function tinyLoraFlags(targets: string): string[] {
  return ["--lora", "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", targets];
}

/** Flags of a tiny, fast run from a fresh model (`--init`) and tokenizer. */
export function tinySftArgs(
  inputs: { train: string; val: string; init: string },
  out: string,
  extra: string[] = [],
): string[] {
  return [
    "sft",
    ...tinyRunFlags(inputs),
    "--init",
    inputs.init,
    "--tokenizer-vocab-size",
    "320",
    "--lr",
    "0.003",
    "--warmup-steps",
    "2",
    "-o",
    out,
    ...extra,
  ];
}
