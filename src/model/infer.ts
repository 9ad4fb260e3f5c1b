import { type Backend, Graph, getF32, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import { InputError } from "../util/errors.js";
import { attentionValues } from "./attention.js";
import { buildForward, type LlamaModel } from "./model.js";

/**
 * Forward pass over one unpadded token sequence: logits [T·V] (row t = distribution after token t).
 * Builds, runs and frees its own graph; for repeated use, a Trainer's `evaluate` reuses one.
 */
export function forwardLogits(backend: Backend, model: LlamaModel, tokens: readonly number[]): Float32Array {
  const T = tokens.length;
  const V = model.config.vocabSize;
  if (T === 0) throw new InputError("no tokens to evaluate", { field: "tokens" });
  for (const t of tokens) {
    if (!(Number.isInteger(t) && t >= 0 && t < V))
      throw new InputError(`token ${t} outside the vocabulary 0..${V - 1}`, { field: "tokens" });
  }
  // `using`: everything made so far is freed on every exit, a throw halfway included
  using s = new Context(8);
  const tok = s.newTensor("i32", [T], "tokens");
  const pos = s.newTensor("i32", [T], "positions");
  const mask = s.newTensor("f32", [T, T, 1, 1], "kq_mask");
  using _buf = backend.allocTensors(s);
  const size = 2048 + model.config.numLayers * 128;
  using c = new Context(size * 2, size, { plainOps: !backend.isCpu });
  using alloc = backend.newAllocator();
  setData(tok, Int32Array.from(tokens));
  const { positions, kqMask } = attentionValues(new Uint8Array(T).fill(1), 1, T);
  setData(pos, positions);
  setData(mask, kqMask);
  const { logits } = buildForward(
    c,
    model,
    tok,
    { positions: pos, kqMask: mask, seqLen: T, batch: 1, ropeMode: model.options.ropeMode },
    true,
  );
  const out = logits as NonNullable<typeof logits>;
  c.setOutput(out);
  const g = new Graph(c, size);
  g.expand(out);
  alloc.alloc(g);
  backend.compute(g);
  return getF32(out);
}

/** log Σ exp of row `r` of a [rows·V] array, in float64 (the row's max taken out first). */
export function logSumExpRow(logits: Float32Array, r: number, V: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]!);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[r * V + v]! - m);
  return m + Math.log(z);
}

/** log-softmax of each row of a [rows·V] array, in float64. */
export function logSoftmaxRows(logits: Float32Array, V: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let r = 0; r < logits.length / V; r++) {
    const lse = logSumExpRow(logits, r, V);
    for (let v = 0; v < V; v++) out[r * V + v] = logits[r * V + v]! - lse;
  }
  return out;
}
