/** Shape checks made in TypeScript before a ggml call, so that a bad shape throws instead of aborting. */
import type { Tensor } from "./tensor.js";

/**
 * A shape was about to reach a ggml op that would GGML_ASSERT (and abort the whole process). Thrown
 * in TypeScript before the native call instead.
 */
export class GgmlShapeError extends Error {
  override name = "GgmlShapeError";
}

export function fail(op: string, msg: string): never {
  throw new GgmlShapeError(`ggml ${op}: ${msg}`);
}

export function sameShape(a: Tensor, b: Tensor): boolean {
  return a.ne.every((d, i) => d === b.ne[i]);
}
