import { Context } from "./context.js";
import { contexts, ptrOf } from "./handles.js";
import { loadNative } from "./native.js";

/**
 * Deliberately makes ggml assert (mul_mat of mismatched shapes, bypassing the TypeScript checks), which
 * aborts the process. Only for proving that process isolation reports native deaths.
 */
export function abortInNativeCodeForTesting(): never {
  const c = new Context(4);
  const a = c.newTensor("f32", [3, 2]);
  const b = c.newTensor("f32", [4, 2]);
  loadNative().base.ggml_mul_mat(contexts.get(c).ptr, ptrOf(a), ptrOf(b));
  throw new Error("ggml did not abort");
}
