import { Context } from "../ggml/context.js";
import { sameShape, type Tensor } from "../ggml/tensor.js";
import { bf16Operand } from "./bf16.js";

/**
 * A hand-written reverse pass. ggml's own autograd differentiates mul_mat into out_prod, a slow axpy loop
 * on CPU; here each layer records a backward step that uses mul_mat on materialised transposes, which
 * runs on ggml's fast GEMM path. Layers call `record` during the forward pass; `backward` replays the steps
 * in reverse, each reading the gradient of its output and adding gradients to its inputs and parameters.
 */
export class Tape {
  readonly #grads = new Map<Tensor, Tensor>();
  readonly #live = new Set<Tensor>();
  /** Gradients that one entry of #grads alone holds, which later contributions may be added into in place. */
  readonly #owned = new Set<Tensor>();
  readonly #steps: Array<() => void> = [];
  /** Gradient of each trainable parameter (summed over every use, e.g. tied embeddings). */
  readonly paramGrads = new Map<Tensor, Tensor>();

  constructor(
    readonly c: Context,
    readonly trainable: ReadonlySet<Tensor>,
    /** Precomputed transposes of frozen weights (they never change, so copying them every step is waste). */
    readonly frozenTransposes: ReadonlyMap<Tensor, Tensor> = new Map(),
    /**
     * Appends a tensor (and whatever it needs) to the graph now. ggml orders a graph by when nodes are
     * first reached and frees a tensor after its last reader, so a step that wants its large temporaries
     * dead before the next one starts (a logits chunk, a recomputed block) places its results here.
     */
    readonly schedule: (t: Tensor) => void = () => {},
  ) {}

  /** A tape for one part of the graph (a chunk, a recomputed block) with this one's parameters and hooks. */
  child(): Tape {
    return new Tape(this.c, this.trainable, this.frozenTransposes, this.schedule);
  }

  /** Marks a tensor whose gradient is wanted although nothing recorded on this tape produced it. */
  markLive(t: Tensor): void {
    this.#live.add(t);
  }

  readonly #transposed = new Map<Tensor, Tensor>();

  /**
   * xᵀ as mulMat's first operand: a view where the GEMM reads it in place, else materialised once per
   * tensor (q, k and v share their input); `bf16` makes it a bfloat16 GEMM operand (bf16.ts).
   */
  transposed(x: Tensor, bf16 = false): Tensor {
    if (bf16) return bf16Operand(this.c, x, true); // Context.operand makes each form once
    if (Context.readsTransposed(x, "f32", this.c.options.plainOps)) return this.c.transpose(x);
    let t = this.#transposed.get(x);
    if (!t) {
      t = this.c.transposed(x);
      this.#transposed.set(x, t);
    }
    return t;
  }

  trains(p: Tensor | undefined): boolean {
    return p !== undefined && this.trainable.has(p);
  }

  /** True when the loss's gradient must flow into `t` (it depends on a trainable parameter). */
  live(t: Tensor): boolean {
    return this.#live.has(t);
  }

  /** Marks `out` as live when any input is live or any parameter is trained; returns whether it is. */
  propagate(
    out: Tensor,
    inputs: ReadonlyArray<Tensor | undefined>,
    params: ReadonlyArray<Tensor | undefined> = [],
  ): boolean {
    const live =
      inputs.some((t) => t !== undefined && this.#live.has(t)) || params.some((p) => this.trains(p));
    if (live) this.#live.add(out);
    return live;
  }

  record(step: () => void): void {
    this.#steps.push(step);
  }

  grad(t: Tensor): Tensor | undefined {
    return this.#grads.get(t);
  }

  /**
   * Adds g to t's gradient. `fresh`: g was made for this call alone (a product), so that later contributions
   * may be added into it in place; a product added to such a gradient is computed into it (Context.accumulate:
   * no add pass, no tensor for the product). Every contribution to t comes before t's own step reads it.
   */
  addGrad(t: Tensor, g: Tensor, fresh = false): void {
    if (!this.#live.has(t)) return;
    const prev = this.#grads.get(t);
    if (!prev) {
      this.#grads.set(t, g);
      // a gradient passed on unchanged (a residual's) is shared by two entries: never written in place
      if (fresh) this.#owned.add(g);
      else this.#owned.delete(g);
      return;
    }
    // a shared g that is a product would be computed twice by accumulate (once for its other consumer)
    const inPlace = this.#owned.has(prev) && sameShape(prev, g);
    const sum = !inPlace
      ? this.c.add(prev, g)
      : fresh
        ? this.c.accumulate(prev, g)
        : this.c.addInplace(prev, g);
    this.#owned.add(sum);
    this.#grads.set(t, sum);
  }

  addParamGrad(p: Tensor | undefined, g: () => Tensor): void {
    if (!p || !this.trains(p)) return;
    const prev = this.paramGrads.get(p);
    const v = g();
    this.paramGrads.set(p, prev ? this.c.add(prev, v) : v);
  }

  /** Sets the gradient of a tensor directly (the loss step seeds its input's gradient). */
  seed(t: Tensor, g: Tensor): void {
    this.#grads.set(t, g);
  }

  backward(): void {
    for (let i = this.#steps.length - 1; i >= 0; i--) (this.#steps[i] as () => void)();
  }
}
