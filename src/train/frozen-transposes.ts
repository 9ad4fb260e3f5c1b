import { type Backend, Graph, getBytes, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { bf16Reduces } from "../model/bf16.js";
import { partnerType } from "../model/lora.js";
import type { LlamaModel } from "../model/model.js";
import { transposeQ8_0 } from "../model/q8.js";

/**
 * Transposed copies of the frozen matrices whose transpose dx = Wᵀ·dy cannot read in place (see `partnerType`
 * and `Context.readsTransposed`: any without steerlm's kernels or off the CPU, a bf16 one against bf16 without
 * AVX512-BF16, a Q8_0 one with rows of one block), and the bf16 rounding of f32 ones under bf16 compute,
 * declared in `s` for the manual backward pass (see linear); after `s` is allocated, `fillFrozenTransposes`
 * makes them.
 */
export function declareFrozenTransposes(model: LlamaModel, s: Context, isCpu: boolean): Map<Tensor, Tensor> {
  const made = new Map<Tensor, Tensor>();
  const bf16 = model.options.computeType === "bf16";
  for (const p of model.params) {
    if (p.trainable || p.shape.length !== 2) continue;
    const w = model.tensor(p.name);
    const [, out] = p.shape as [number, number];
    const dy = partnerType(w.type, bf16, out);
    // an f32 W's bf16 Wᵀ is made once where it needs no padding (model/bf16.ts); else linear rounds it each step
    const type = dy === "bf16" && w.type === "f32" ? (bf16Reduces(out) ? "bf16" : null) : w.type;
    if (type === null || (type === w.type && Context.readsTransposed(w, dy, !isCpu))) continue;
    made.set(w, s.newTensor(type, [out, p.shape[0]!], `${p.name}.T`));
  }
  return made;
}

/** Makes (or remakes, after a frozen weight changed) the transposes `declareFrozenTransposes` declared. */
export function fillFrozenTransposes(backend: Backend, transposes: ReadonlyMap<Tensor, Tensor>): void {
  // a q8_0 Wᵀ is made on the host (ggml cannot transpose quantised data), the others in one graph
  const graphed = [...transposes].filter(([w]) => w.type !== "q8_0");
  for (const [w, wt] of transposes)
    if (w.type === "q8_0") setData(wt, transposeQ8_0(getBytes(w), w.ne[0], w.ne[1]));
  if (graphed.length === 0) return;
  const ctx = new Context(3 * graphed.length + 8, graphed.length * 3 + 16);
  const alloc = backend.newAllocator();
  try {
    const g = new Graph(ctx, graphed.length * 3 + 16);
    for (const [w, wt] of graphed) g.expand(ctx.copy(ctx.transpose(w), wt));
    alloc.alloc(g);
    backend.compute(g);
  } finally {
    alloc.free();
    ctx.free();
  }
}
