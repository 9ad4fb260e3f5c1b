import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";

/** A few dozen SteerBench conversations and a tiny model config, written into `dir`. */
export function tinySftInputs(dir: string, n = 60): { train: string; val: string; init: string } {
  writeBench(dir, synthesize({ n, seed: 7, multiTurnFraction: 0.1 }));
  const init = join(dir, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\ncontextLength: 256\n");
  return { train: join(dir, "train.jsonl"), val: join(dir, "validation.jsonl"), init };
}

/** Flags of a tiny, fast run. */
export function tinySftArgs(
  inputs: { train: string; val: string; init: string },
  out: string,
  extra: string[] = [],
): string[] {
  return [
    "sft",
    "--data",
    inputs.train,
    "--val",
    inputs.val,
    "--init",
    inputs.init,
    "--tokenizer-vocab-size",
    "320",
    "--seq-len",
    "128",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--lr",
    "0.003",
    "--warmup-steps",
    "2",
    "-o",
    out,
    ...extra,
  ];
}
