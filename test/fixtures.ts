import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { runCli } from "./helpers.js";

// Tiny models trained through the real CLI, shared by the end-to-end tests of the steps that need a
// trained SFT model and APM (bootstrap, SteerLM 2.0): d 32, 1 layer, a 512-token context.

/** Writes the tiny model's `--init` file into `dir` and returns its path. */
export function writeTinyInit(dir: string): string {
  const init = join(dir, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\ncontextLength: 512\n");
  return init;
}

const common = (data: string, init: string) => [
  "--data",
  data,
  "--init",
  init,
  "--batch-size",
  "4",
  "--threads",
  "1",
];

/** `steerlm sft` (vocabulary 320, 128 tokens, lr 0.003) for `steps` into `run`, then `export gguf` to `gguf`. */
export async function trainTinySft(o: {
  data: string;
  init: string;
  run: string;
  gguf: string;
  steps: number;
}) {
  const sft = await runCli(
    ["sft", ...common(o.data, o.init), "--tokenizer-vocab-size", "320", "--seq-len", "128"].concat([
      "--steps",
      String(o.steps),
      "--lr",
      "0.003",
      "-o",
      o.run,
    ]),
  );
  expect(sft.stderr).not.toContain("internal error");
  expect(sft.code).toBe(0);
  expect((await runCli(["export", "gguf", o.run, "-o", o.gguf])).code).toBe(0);
}

/** A regression APM (vocabulary 300, 96 tokens), trained long enough (150 steps, about a second) that its labels differ between responses. */
export async function trainTinyApm(o: { data: string; init: string; out: string }) {
  const a = await runCli(
    ["apm", "train", ...common(o.data, o.init), "--tokenizer-vocab-size", "300", "--seq-len", "96"].concat([
      "--steps",
      "150",
      "--lr",
      "0.003",
      "-o",
      o.out,
    ]),
  );
  expect(a.code).toBe(0);
}
