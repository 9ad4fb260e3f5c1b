import { type Backend, Graph, type GraphAllocator } from "../src/ggml/backend.js";
import type { Context } from "../src/ggml/context.js";
import type { Tensor } from "../src/ggml/tensor.js";
import { type LlamaConfig, resolveLlamaConfig } from "../src/model/config.js";
import type { LlamaModel } from "../src/model/model.js";
import { type Batch, IGNORE } from "../src/train/batch.js";
import type { Trainer } from "../src/train/trainer.js";
import { Rng } from "../src/util/rng.js";

/** Tiny models, batches and gradient probes shared by the engine's tests (src/train, src/ggml). */

/**
 * Computes `out` once: marks it the output of `c`, builds its graph (at most `size` nodes), allocates and
 * runs it. The caller frees the returned allocator after reading `out`.
 */
export function computeOnce(backend: Backend, c: Context, size: number, out: Tensor): GraphAllocator {
  c.setOutput(out);
  const g = new Graph(c, size);
  g.expand(out);
  const alloc = backend.newAllocator();
  alloc.alloc(g);
  backend.compute(g);
  return alloc;
}

/** A tiny Llama shape with GQA and q/k/v biases; `over` changes any of it. */
export function tinyLlama(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return resolveLlamaConfig({
    vocabSize: 29,
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    ffnSize: 24,
    qkvBias: true,
    ...over,
  });
}

/** B seeded random sequences of T tokens: the last two positions are padding, each position 2 is out of the loss. */
export function paddedBatch(cfg: LlamaConfig, B: number, T: number, rng: Rng): Batch {
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, cfg.vocabSize - 1));
  const attention = Uint8Array.from({ length: B * T }, (_, i) => (i >= B * T - 2 ? 0 : 1));
  const labels = Int32Array.from(tokens, (t, i) => (attention[i] && i % T !== 2 ? t : IGNORE));
  return { tokens, attention, labels };
}

/** LoRA B starts at zero, so A's gradient would vanish: gives every B matrix N(0, 0.3²) values. */
export function fillLoraB(model: LlamaModel, rng = new Rng(11)): void {
  for (const p of model.params)
    if (p.name.endsWith(".lora_b"))
      model.setWeight(
        p.name,
        rng.normalArray(
          p.shape.reduce((a, b) => a * b),
          0.3,
        ),
      );
}

/**
 * The relative error of `analytic`, the gradient of weight `name` at `idx`, against central finite
 * differences in float32: a large eps suffers curvature error, a small one rounding (ulp(loss)/2eps), so
 * the better of two; measured against |fd| + |analytic|.
 */
export function finiteDifferenceError(
  model: LlamaModel,
  trainer: Trainer,
  b: Batch,
  name: string,
  idx: number,
  analytic: number,
): number {
  const w0 = model.getWeight(name);
  let best = Number.POSITIVE_INFINITY;
  for (const eps of [1e-2, 2.5e-3]) {
    const w = Float32Array.from(w0);
    w[idx] = (w0[idx] as number) + eps;
    model.setWeight(name, w);
    const lp = trainer.evaluate(b).loss;
    w[idx] = (w0[idx] as number) - eps;
    model.setWeight(name, w);
    const lm = trainer.evaluate(b).loss;
    model.setWeight(name, w0);
    const fd = (lp - lm) / (2 * eps);
    best = Math.min(best, Math.abs(fd - analytic) / Math.max(2e-3, Math.abs(fd) + Math.abs(analytic)));
  }
  return best;
}

/** The index of the largest-magnitude entry (the probe every gradient check starts with). */
export function argMaxAbs(g: Float32Array): number {
  let imax = 0;
  for (let i = 1; i < g.length; i++) if (Math.abs(g[i] as number) > Math.abs(g[imax] as number)) imax = i;
  return imax;
}
