import { GGML_TYPES, type GgmlTypeName } from "../gguf/types.js";

/**
 * Element types the engine uses. q8_0 (blocks of 32 values as {f16 scale, int8[32]}, 34 bytes) holds frozen
 * weights only: ggml multiplies it with f32 but cannot transpose or train it.
 */
export type DType = keyof typeof GGML_NAME;

/** Each element type's name in ggml's one type table (gguf/types.ts). */
const GGML_NAME = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
  i32: "I32",
  q8_0: "Q8_0",
} as const satisfies Record<string, GgmlTypeName>;

export const DTYPES = Object.keys(GGML_NAME) as readonly DType[];

/** `t`'s ggml_type id, values per block (1 for the plain types) and bytes per block. */
export function ggmlType(t: DType): (typeof GGML_TYPES)[GgmlTypeName] {
  return GGML_TYPES[GGML_NAME[t]];
}

/** Shape in ggml order: ne[0] is the fastest-moving (contiguous) dimension. Always four entries. */
export type Shape4 = readonly [number, number, number, number];

/**
 * A ggml tensor handle, made by a Context. Only its shape, type and name are visible; the native address
 * stays inside src/ggml (handles.ts). Shapes are read back from ggml after each op so TypeScript always
 * knows the true layout and can validate the next op before ggml could assert.
 */
export class Tensor {
  constructor(
    readonly ne: Shape4,
    /** Byte strides, ggml's nb[]. */
    readonly nb: Shape4,
    readonly type: DType,
    readonly name: string,
  ) {}

  get nelements(): number {
    return this.ne[0] * this.ne[1] * this.ne[2] * this.ne[3];
  }

  /** Row-major contiguity in ggml's sense (no gaps, no permutation). */
  get contiguous(): boolean {
    const { blockSize: bs, bytesPerBlock: bytes } = ggmlType(this.type);
    return (
      this.nb[0] === bytes &&
      this.nb[1] === (bytes * this.ne[0]) / bs &&
      this.nb[2] === this.nb[1] * this.ne[1] &&
      this.nb[3] === this.nb[2] * this.ne[2]
    );
  }

  /** "[a,b,c,d]" trimmed of trailing 1s, for error messages. */
  get shapeText(): string {
    const ne = [...this.ne];
    while (ne.length > 1 && ne[ne.length - 1] === 1) ne.pop();
    return `[${ne.join(",")}]`;
  }
}

export function elementSize(t: DType): number {
  if (t === "q8_0") throw new Error("q8_0 has no per-element size (use byteSize)");
  return ggmlType(t).bytesPerBlock;
}

/** Bytes of one element, or of one block for a block-quantised type (ggml's nb[0] of a row-contiguous tensor). */
export function blockBytes(t: DType): number {
  return ggmlType(t).bytesPerBlock;
}

/** Bytes that `n` values of type `t` occupy (n a multiple of the block size). */
export function byteSize(t: DType, n: number): number {
  const { blockSize: bs, bytesPerBlock: bytes } = ggmlType(t);
  if (n % bs !== 0) throw new Error(`${t} needs a multiple of ${bs} values, got ${n}`);
  return (n / bs) * bytes;
}

/** Whether two tensors have the same shape (types and layouts aside). */
export function sameShape(a: Tensor, b: Tensor): boolean {
  return a.ne.every((d, i) => d === b.ne[i]);
}
