import { type CtxPtr, type KernelFn, type TensorPtr, tensorLayout, type UserdataWord } from "./ffi.js";
import { adoptTensor, contexts, ptrOf } from "./handles.js";
import { dtypeCode, dtypeFromCode, loadNative, type NativeGgml } from "./native.js";
import { GGML_N_TASKS_MAX, loadKernels, type NativeKernels } from "./native-kernels.js";
import { fail, GgmlShapeError } from "./shape-error.js";
import { type DType, type Shape4, Tensor } from "./tensor.js";

/**
 * A ggml context holding tensor metadata only (no_alloc): data lives in backend buffers that
 * `allocTensors` / a graph allocator create. This class is the context's memory and how nodes are made in it
 * (new tensors, ggml calls, steerlm's custom kernels, nodes made once per context); the ops are in
 * ForwardContext (forward-context.ts) and Context (context.ts).
 */
export class GraphContext implements Disposable {
  protected readonly native: NativeGgml;
  #count = 0;
  readonly tensors: Tensor[] = [];

  /**
   * `plainOps`: only ggml's own ops, for a graph that ggml's autograd differentiates (it cannot see
   * through steerlm's custom kernels) or that a non-CPU backend runs (the kernels are CPU code).
   */
  constructor(
    readonly maxTensors: number,
    graphSize = 0,
    readonly options: { plainOps?: boolean } = {},
  ) {
    this.native = loadNative();
    const b = this.native.base;
    const mem =
      Number(b.ggml_tensor_overhead()) * (maxTensors + 16) +
      (graphSize > 0 ? Number(b.ggml_graph_overhead_custom(graphSize, true)) + 4096 : 0);
    const ptr = b.ggml_init({ mem_size: mem, mem_buffer: null, no_alloc: true });
    if (!ptr) throw new Error("ggml_init failed");
    contexts.adopt(this, { ptr, wrap: (p, name) => this.wrap(p, name) });
  }

  /** steerlm's kernels where this context may use them: loaded, and not a plainOps context. */
  protected get kernels(): NativeKernels | null {
    return this.options.plainOps ? null : loadKernels();
  }

  protected get ctxPtr(): CtxPtr {
    return contexts.get(this).ptr;
  }

  /** Frees the context's memory, with every tensor and graph made in it. A second call does nothing. */
  free(): void {
    const native = contexts.release(this);
    if (native) this.native.base.ggml_free(native.ptr);
  }

  [Symbol.dispose](): void {
    this.free();
  }

  /** A node made by one ggml call on this context's memory (for the subclasses' ops). */
  protected op(make: (ggml: NativeGgml["base"], ctx: CtxPtr) => TensorPtr | null): Tensor {
    return this.wrap(make(this.native.base, this.ctxPtr));
  }

  /** Wraps a native tensor returned by ggml, reading its real shape and strides. */
  protected wrap(p: TensorPtr | null, name = ""): Tensor {
    if (!p) throw new Error("ggml returned a null tensor");
    if (++this.#count > this.maxTensors) {
      throw new GgmlShapeError(`ggml context full: more than ${this.maxTensors} tensors`);
    }
    const { type, ne, nb } = tensorLayout(p);
    const t = new Tensor(ne, nb, dtypeFromCode(type), name);
    adoptTensor(t, this, p);
    if (name) this.native.base.ggml_set_name(p, name.slice(0, 63));
    return t;
  }

  newTensor(type: DType, ne: readonly number[], name = ""): Tensor {
    if (ne.length < 1 || ne.length > 4 || ne.some((d) => !Number.isInteger(d) || d <= 0)) {
      fail("new_tensor", `bad shape [${ne.join(",")}] for ${name || "tensor"}`);
    }
    const [a = 1, b = 1, c = 1, d = 1] = ne;
    const t = this.wrap(this.native.base.ggml_new_tensor_4d(this.ctxPtr, dtypeCode(type), a, b, c, d), name);
    this.tensors.push(t);
    return t;
  }

  setParam(t: Tensor): void {
    this.native.base.ggml_set_param(ptrOf(t));
  }
  setInput(t: Tensor): void {
    this.native.base.ggml_set_input(ptrOf(t));
  }
  setOutput(t: Tensor): void {
    this.native.base.ggml_set_output(ptrOf(t));
  }
  setLoss(t: Tensor): void {
    if (t.nelements !== 1 || t.type !== "f32")
      fail("set_loss", `loss must be an f32 scalar, got ${t.shapeText}`);
    this.native.base.ggml_set_loss(ptrOf(t));
  }

  /**
   * A node derived from `from` and made once per context for each `form` (a tiled row, a GEMM operand, a RoPE
   * table): the graphs that read it share one node instead of computing it again.
   */
  protected made(from: Tensor, form: string, make: () => Tensor): Tensor {
    let forms = this.#forms.get(from);
    if (!forms) {
      forms = new Map();
      this.#forms.set(from, forms);
    }
    let t = forms.get(form);
    if (!t) {
      t = make();
      forms.set(form, t);
    }
    return t;
  }
  readonly #forms = new WeakMap<Tensor, Map<string, Tensor>>();

  /** Products made by steerlm's f32 GEMM, with their operands (see Context.accumulate). */
  readonly #products = new WeakMap<Tensor, readonly [Tensor, Tensor]>();
  protected recordProduct(out: Tensor, a: Tensor, b: Tensor): void {
    this.#products.set(out, [a, b]);
  }
  protected productOf(t: Tensor): readonly [Tensor, Tensor] | undefined {
    return this.#products.get(t);
  }
  /**
   * A ggml_custom_4d node running steerlm kernel `fn` on all threads (or `tasks`); srcs become dst->src[],
   * `word` the kernel's userdata.
   */
  protected custom(
    type: DType,
    ne: Shape4,
    srcs: readonly Tensor[],
    fn: KernelFn,
    tasks = GGML_N_TASKS_MAX,
    word: UserdataWord | null = null,
  ): Tensor {
    const [n0, n1, n2, n3] = ne;
    const args = srcs.map(ptrOf);
    const f = this.native.base.ggml_custom_4d;
    return this.wrap(f(this.ctxPtr, dtypeCode(type), n0, n1, n2, n3, args, args.length, fn, tasks, word));
  }
  /** A ggml_custom_inplace node: kernel `fn` writes into a view of `a` (dst->src[0]); `srcs` follow it. */
  protected customInplace(
    a: Tensor,
    srcs: readonly Tensor[],
    fn: KernelFn,
    word: UserdataWord | null = null,
  ): Tensor {
    const args = srcs.map(ptrOf);
    const f = this.native.base.ggml_custom_inplace;
    return this.wrap(f(this.ctxPtr, ptrOf(a), args, args.length, fn, GGML_N_TASKS_MAX, word));
  }
}
