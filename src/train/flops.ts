import type { LlamaConfig } from "../model/config.js";
import { LORA_TARGET_TENSOR, LORA_TARGETS, type LoraOptions, type LoraTarget } from "../model/lora.js";
import { blockTensor } from "../model/tensor-names.js";
import { llamaTensorSpecs } from "../model/weights.js";

/** Model FLOPs of one training step (fwd + bwd), split the way MFU and the cost tables use them. */
export interface StepFlops {
  forward: number;
  backward: number;
  total: number;
  /** The part of `total` in attention's QK^T and AV products (forward and backward). */
  attention: number;
}

/**
 * Model FLOPs of one training step on `batch` sequences of `seq` tokens, counted from the shapes: every
 * matrix product, 2 flops a multiply-add, nothing else (norms, softmax, RoPE, AdamW are left out, as MFU
 * counts them). Forward per token and block: q, k, v, o, gate, up, down projections; attention's QK^T and
 * AV over the full T × T square, as PaLM's MFU counts them (the graph of products computes all of it and
 * masks after; steerlm's attention kernel computes blocks of 32 queries against the keys up to each block's
 * last: 62.5% of the square at T = 128, where m10's count is then 2.4% above the work done, docs/engine.md);
 * the output projection (lm head) once. Backward: a trained matrix costs twice its forward (the input's
 * gradient and the weight's); a frozen one (LoRA's base, the lm head under LoRA) only the input's gradient
 * (once); attention's two products twice (both operands are activations); LoRA's A and B twice.
 */
export function trainStepFlops(
  cfg: LlamaConfig,
  batch: number,
  seq: number,
  /** null: every weight is trained; else LoRA adapters on a frozen base. */
  lora: Pick<LoraOptions, "rank" | "targets"> | null,
): StepFlops {
  const tokens = batch * seq;
  const d = cfg.hiddenSize;
  const qd = cfg.numHeads * cfg.headDim;
  // [in, out] of each projection in a block: the model's own tensor shapes (ggml: ne0 = in)
  const specs = llamaTensorSpecs({ ...cfg, numLayers: 1 });
  const shapes = Object.fromEntries(
    LORA_TARGETS.map((t) => {
      const spec = specs.find((s) => s.name === blockTensor(0, `${LORA_TARGET_TENSOR[t]}.weight`));
      return [t, spec?.shape as [number, number]];
    }),
  ) as Record<LoraTarget, [number, number]>;
  const weightBackward = lora ? 1 : 2;
  let fwd = 0;
  let bwd = 0;
  for (const [name, [din, dout]] of Object.entries(shapes) as [LoraTarget, [number, number]][]) {
    const f = 2 * tokens * din * dout;
    fwd += f;
    bwd += weightBackward * f;
    if (lora?.targets.includes(name)) {
      const fl = 2 * tokens * lora.rank * (din + dout);
      fwd += fl;
      bwd += 2 * fl;
    }
  }
  // QK^T and AV: each [T, HD] x [HD, T] per head and sequence
  const attnFwd = 2 * 2 * batch * seq * seq * qd;
  fwd = (fwd + attnFwd) * cfg.numLayers;
  bwd = (bwd + 2 * attnFwd) * cfg.numLayers;
  const head = 2 * tokens * d * cfg.vocabSize;
  fwd += head;
  bwd += weightBackward * head;
  return { forward: fwd, backward: bwd, total: fwd + bwd, attention: 3 * attnFwd * cfg.numLayers };
}
