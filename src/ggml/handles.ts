/**
 * The native handle behind each object of the binding, kept here rather than in a member so that no type
 * outside src/ggml carries a pointer: only src/ggml imports this module (test/layering.test.ts checks).
 * A handle is freed once (freeing again is a no-op), and an object used after its free throws instead of
 * handing ggml a dangling pointer.
 */

import type { CtxPtr, TensorPtr } from "./ffi.js";
import type { GraphContext } from "./graph-context.js";
import type { Tensor } from "./tensor.js";

/** The handles of one kind of object (contexts, buffers…), by owner. */
export class Handles<O extends object, H> {
  readonly #live = new WeakMap<O, H>();
  constructor(private readonly kind: string) {}

  adopt(owner: O, handle: H): void {
    this.#live.set(owner, handle);
  }

  has(owner: O): boolean {
    return this.#live.has(owner);
  }

  get(owner: O): H {
    const h = this.#live.get(owner);
    if (h === undefined) throw new Error(`ggml ${this.kind} used after free`);
    return h;
  }

  /** The handle to free, once: undefined when `owner` was freed already. */
  release(owner: O): H | undefined {
    const h = this.#live.get(owner);
    this.#live.delete(owner);
    return h;
  }
}

/** A context's handle, and how a tensor that ggml made in it becomes a `Tensor` (Context's own method). */
export interface NativeContext {
  ptr: CtxPtr;
  wrap(p: TensorPtr | null, name?: string): Tensor;
}
export const contexts = new Handles<GraphContext, NativeContext>("context");

/** Tensors and graphs live in their context's memory: they are freed with it, never on their own. */
export function checkContextLive(ctx: GraphContext, what: string): void {
  if (!contexts.has(ctx)) throw new Error(`ggml ${what} used after its context was freed`);
}

const tensors = new WeakMap<Tensor, { ctx: GraphContext; ptr: TensorPtr }>();

export function adoptTensor(t: Tensor, ctx: GraphContext, ptr: TensorPtr): void {
  tensors.set(t, { ctx, ptr });
}

/** The native tensor behind `t`. */
export function ptrOf(t: Tensor): TensorPtr {
  const native = tensors.get(t);
  if (!native) throw new Error("tensor handle without a native tensor");
  checkContextLive(native.ctx, `tensor ${t.name || t.shapeText}`);
  return native.ptr;
}
