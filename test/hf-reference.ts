/**
 * The PyTorch reference of Hugging Face Llama / Qwen2 (test/hf_llama_reference.py), run by Debian's Python
 * with python3-torch (`.ci/run` installs it). Without torch the checks that need it are skipped, loudly.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "./helpers.js";

const PYTHON = "/usr/bin/python3";

export const haveTorch = spawnSync(PYTHON, ["-c", "import torch"], { stdio: "ignore" }).status === 0;
if (!haveTorch) {
  process.stderr.write(
    `\n*** ${PYTHON} cannot import torch: the PyTorch reference checks of \`steerlm export hf\` are SKIPPED ` +
      "(apt-get install python3-torch) ***\n\n",
  );
}

export interface ReferenceRequest {
  /** A Hugging Face model directory. */
  model: string;
  /** A PEFT adapter directory to apply. */
  adapter?: string;
  tokens: number[];
}

/** log p(next | prefix) for every position of each request, as dense rows (float64 throughout). */
export function hfReferenceLogProbs(requests: ReferenceRequest[]): Float64Array[][] {
  const r = spawnSync(PYTHON, [join(repoRoot, "test", "hf_llama_reference.py")], {
    input: JSON.stringify(requests.map((q) => ({ ...q, adapter: q.adapter ?? null }))),
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  if (r.status !== 0) throw new Error(`hf_llama_reference.py failed (${r.status}): ${r.stderr}`);
  const out = JSON.parse(r.stdout) as Array<{ logprobs: number[][] }>;
  return out.map((o) => o.logprobs.map((row) => Float64Array.from(row)));
}
