/**
 * TEST ORACLE ONLY: ggml's own quantisers and decoders (libggml-base from node-llama-cpp's prebuilt
 * binaries), called through koffi, so the TypeScript codecs in quant.ts are checked against the reference
 * implementation bit for bit. Not part of the public API; the engine's ggml binding lives elsewhere.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import koffi from "koffi";
import { GGML_TYPES, type GgmlTypeName } from "./types.js";

export interface GgmlOracle {
  /** ggml_quantize_chunk on one row-major matrix of `rows` rows of `rowLength` values. */
  quantize(type: GgmlTypeName, src: Float32Array, rowLength: number): Uint8Array;
  /** The type's `to_float` from ggml_get_type_traits. */
  toFloat(type: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array;
  /** ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row. */
  toHalf(kind: "F16" | "BF16", src: Float32Array): Uint16Array;
}

let oracle: GgmlOracle | undefined;

function libPath(): string {
  const require = createRequire(import.meta.url);
  const pkg = dirname(dirname(require.resolve("@node-llama-cpp/linux-x64"))); // main is dist/index.js
  const p = join(pkg, "bins", "linux-x64", "libggml-base.so");
  if (!existsSync(p)) throw new Error(`ggml oracle: ${p} not found`);
  return p;
}

export function ggmlOracle(): GgmlOracle {
  if (oracle) return oracle;
  const lib = koffi.load(libPath());
  const quantizeChunk = lib.func(
    "size_t ggml_quantize_chunk(int type, const float *src, _Out_ uint8_t *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)",
  );
  const toFloatFn = koffi.proto("void ggml_to_float_t(const uint8_t *x, _Out_ float *y, int64_t k)");
  const Traits = koffi.struct("ggml_type_traits", {
    type_name: "const char *",
    blck_size: "int64_t",
    blck_size_interleave: "int64_t",
    type_size: "size_t",
    is_quantized: "bool",
    to_float: "void *",
    from_float_ref: "void *",
  });
  const getTraits = lib.func("ggml_get_type_traits", koffi.pointer(Traits), ["int"]);
  const toF16 = lib.func("void ggml_fp32_to_fp16_row(const float *x, _Out_ uint16_t *y, int64_t n)");
  const toBf16 = lib.func("void ggml_fp32_to_bf16_row(const float *x, _Out_ uint16_t *y, int64_t n)");

  oracle = {
    quantize(type, src, rowLength) {
      const rows = src.length / rowLength;
      const out = new Uint8Array((src.length / GGML_TYPES[type].blockSize) * GGML_TYPES[type].bytesPerBlock);
      const n = Number(quantizeChunk(GGML_TYPES[type].id, src, out, 0, rows, rowLength, null));
      if (n !== out.length) throw new Error(`ggml_quantize_chunk wrote ${n} bytes, expected ${out.length}`);
      return out;
    },
    toFloat(type, bytes, n) {
      const traits = koffi.decode(getTraits(GGML_TYPES[type].id), Traits) as { to_float: unknown };
      if (!traits.to_float) throw new Error(`ggml has no to_float for ${type}`);
      const out = new Float32Array(n);
      koffi.call(traits.to_float, toFloatFn, bytes, out, n);
      return out;
    },
    toHalf(kind, src) {
      const out = new Uint16Array(src.length);
      (kind === "F16" ? toF16 : toBf16)(src, out, src.length);
      return out;
    },
  };
  return oracle;
}
