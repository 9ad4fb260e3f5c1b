/** Shape checks made in TypeScript before a ggml call, so that a bad shape throws instead of aborting. */

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
