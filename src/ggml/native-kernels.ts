/**
 * Loader of steerlm's own CPU kernels (native/*.c, built at install time by scripts/build-native.mjs into
 * build/native/libsteerlm-kernels.so), which graphs call as ggml custom ops. See native.ts for the rules.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import koffi, { type LibraryHandle } from "koffi";
import { SteerlmError } from "../util/errors.js";
import {
  type Bound,
  declare,
  type KernelFn,
  TENSOR_DATA_OFFSET,
  TENSOR_NB_OFFSET,
  TENSOR_NE_OFFSET,
  TENSOR_OP_OFFSET,
  TENSOR_SRC_OFFSET,
  TENSOR_TYPE_OFFSET,
} from "./ffi.js";
import { ggmlType } from "./tensor.js";

/** ggml_custom_4d's n_tasks for "every thread of the pool" (GGML_N_TASKS_MAX). */
export const GGML_N_TASKS_MAX = -1;
/**
 * The instruction-set levels of native/kernels.c (tests cap the kernels at one, the CPU's own at most);
 * amx: the bf16 GEMM on AMX tiles where the CPU and Linux allow them, AVX-512 for the rest.
 */
export const ISA_LEVEL = { generic: 0, avx2: 1, avx512: 2, amx: 3 } as const;

/**
 * What native/kernels.h must agree on with this side (steerlm_kernels_abi): struct ggml_tensor's type, ne,
 * nb, op, src and data offsets, the ggml_type ids of f32 and bf16, the ISA levels, the kernel set's version.
 */
export const KERNELS_ABI = [
  TENSOR_TYPE_OFFSET,
  TENSOR_NE_OFFSET,
  TENSOR_NB_OFFSET,
  TENSOR_OP_OFFSET,
  TENSOR_SRC_OFFSET,
  TENSOR_DATA_OFFSET,
  ggmlType("f32").id,
  ggmlType("bf16").id,
  ISA_LEVEL.generic,
  ISA_LEVEL.avx2,
  ISA_LEVEL.avx512,
  ISA_LEVEL.amx,
  7,
] as const;

/** native/kernels.h: the ABI check first, alone, so that any library that has it can be told apart */
const ABI_DECL = ["void steerlm_kernels_abi(_Out_ int64_t *out)"] as const;
const KERNEL_DECLS = [
  "void steerlm_kernels_set_isa(int level)",
  "ggml_custom_op_t *steerlm_kernel(const char *name)",
  "size_t steerlm_gemm_scratch_bytes()",
  "void steerlm_gemm_scratch_release()",
  "size_t steerlm_gemm_split_products()",
  "int steerlm_have_amx()",
  "int steerlm_amx_present()",
] as const;

export interface NativeKernels {
  path: string;
  /** The custom ops' functions, for ggml_custom_4d. */
  relayout: KernelFn;
  /** The masked cross-entropy's gradient from its softmax (null in a library built before it). */
  crossEntropyBack: KernelFn | null;
  /** The optimiser's passes: Σ x² in double, and clipped AdamW that clears the gradient it read (adamw.c). */
  sumSquares: KernelFn | null;
  adamw: KernelFn | null;
  /** SwiGLU's two input gradients in one pass (swiglu.c). */
  swigluBack: KernelFn | null;
  /** softmax(a·scale + mask) by rows (softmax.c); the scale comes as the node's userdata (`userdataWord`). */
  softMax: KernelFn | null;
  /** RMSNorm and its gradient by rows (rmsnorm.c); eps comes as the node's userdata. */
  rmsNorm: KernelFn | null;
  rmsNormBack: KernelFn | null;
  /** RMSNorm times a gain, and its two gradients in one pass (rmsnorm.c); null without AVX-512. */
  rmsNormGain: KernelFn | null;
  rmsNormGainBack: KernelFn | null;
  /** RoPE's table of cos and sin by token, and the rotation (or its inverse) by it (rope.c). */
  ropeTable: KernelFn | null;
  rope: KernelFn | null;
  /**
   * Causal attention with RoPE in one node and its gradient in another (attention.c), by RoPE's pairing;
   * null without AVX-512.
   */
  attention: { normal: KernelFn; neox: KernelFn } | null;
  attentionBack: { normal: KernelFn; neox: KernelFn } | null;
  /** GEMMs with f32 accumulation; null where the CPU lacks AVX512-BF16 (bf16) / AVX2 and AVX-512 (the rest). */
  gemmBf16: KernelFn | null;
  /**
   * Whether gemmBf16 runs on AMX tiles where K is a multiple of 32 (Intel since Sapphire Rapids, Linux 5.16+,
   * a library built by GCC 11+ or clang 12+); the first call asks Linux for the tiles, as the first bf16
   * product does. `amxPresent`: whether it would, asking nothing.
   */
  amx: () => boolean;
  amxPresent: () => boolean;
  gemmF32: KernelFn | null;
  /** dst += a·b into a view of an f32 tensor (a weight's gradient accumulator), a and b as gemmF32's. */
  gemmF32Into: KernelFn | null;
  /** a f16 / bf16 / Q8_0 (a frozen base) times b f32: a widened exactly to f32, then the f32 GEMM. */
  gemmF16: KernelFn | null;
  gemmBf16F32: KernelFn | null;
  gemmQ8_0: KernelFn | null;
  /** Holds the library, so that koffi never unloads it while graphs point into it. */
  fns: Bound<typeof KERNEL_DECLS>;
  /** The loaded library, for entry points declared where they are used (peak.ts). */
  lib: LibraryHandle;
}

let kernels: NativeKernels | null | undefined;
let kernelsOff = false;

/**
 * Tests only (graphs built afterwards): "native" as loaded; "avx512" the AVX-512 code paths a CPU without
 * AMX runs; "avx2" the AVX2 ones a CPU without AVX-512 runs; "generic" the portable ones a CPU without
 * either runs (scalar relayout, ggml's GEMMs); "off" plain ggml ops, as without the library.
 */
export function setKernelsModeForTesting(mode: "native" | "avx512" | "avx2" | "generic" | "off"): void {
  kernelsOff = mode === "off";
  kernels = undefined;
  const k = loadKernels();
  if (!k) return;
  k.fns.steerlm_kernels_set_isa(mode === "off" || mode === "native" ? ISA_LEVEL.amx : ISA_LEVEL[mode]);
  kernels = undefined;
}

/** Where scripts/build-native.mjs writes the library: build/native/ at the package root. */
export function kernelsPath(): string {
  const env = process.env.STEERLM_KERNELS;
  if (env && env !== "0" && env !== "1") return env;
  return join(
    dirname(fileURLToPath(import.meta.url)),
    "..",
    "..",
    "build",
    "native",
    "libsteerlm-kernels.so",
  );
}

/**
 * steerlm's own kernels (native/*.c), built at install time. null when they were not built (no C
 * compiler) or STEERLM_KERNELS=0: the engine then uses plain ggml ops with the same results.
 */
export function loadKernels(): NativeKernels | null {
  if (kernelsOff) return null;
  if (kernels !== undefined) return kernels;
  kernels = null;
  if (process.env.STEERLM_KERNELS === "0") return kernels;
  const path = kernelsPath();
  if (!existsSync(path)) return kernels;
  const lib = koffi.load(path);
  const abi = new BigInt64Array(KERNELS_ABI.length);
  declare(lib, ABI_DECL).steerlm_kernels_abi(abi);
  const got = Array.from(abi, Number);
  if (got.join() !== KERNELS_ABI.join()) {
    throw new SteerlmError(
      `${path} was built for another ggml tensor layout or kernel set (${got.join(",")}, expected ${KERNELS_ABI.join(",")})`,
      "rebuild it: `npm run build:native`",
    );
  }
  const fns = declare(lib, KERNEL_DECLS);
  const fn = fns.steerlm_kernel;
  const relayout = fn("relayout");
  if (!relayout)
    throw new SteerlmError(`${path} has no relayout kernel`, "rebuild it: `npm run build:native`");
  kernels = {
    path,
    relayout,
    crossEntropyBack: fn("cross_entropy_back"),
    sumSquares: fn("sum_squares"),
    adamw: fn("adamw"),
    swigluBack: fn("swiglu_back"),
    softMax: fn("soft_max"),
    rmsNorm: fn("rms_norm"),
    rmsNormBack: fn("rms_norm_back"),
    rmsNormGain: fn("rms_norm_gain"),
    rmsNormGainBack: fn("rms_norm_gain_back"),
    ropeTable: fn("rope_table"),
    rope: fn("rope"),
    attention: byPairing(fn("attention"), fn("attention_neox")),
    attentionBack: byPairing(fn("attention_back"), fn("attention_back_neox")),
    gemmBf16: fn("gemm_bf16"),
    amx: () => fns.steerlm_have_amx() !== 0,
    amxPresent: () => fns.steerlm_amx_present() !== 0,
    gemmF32: fn("gemm_f32"),
    gemmF32Into: fn("gemm_f32_into"),
    gemmF16: fn("gemm_f16"),
    gemmBf16F32: fn("gemm_bf16_f32"),
    gemmQ8_0: fn("gemm_q8_0"),
    fns,
    lib,
  };
  return kernels;
}

function byPairing(normal: KernelFn | null, neox: KernelFn | null) {
  return normal && neox ? { normal, neox } : null;
}

/** Whether steerlm's bf16 products would run on AMX tiles here (NativeKernels.amxPresent; asks Linux nothing). */
export function bf16OnAmx(): boolean {
  return loadKernels()?.amxPresent() ?? false;
}

/**
 * The GEMMs' packing scratch, a pool of buffers kept between products and shared by the threads that run
 * them (bounded by the products running at once, not by how many threads ever ran one): bytes held, and
 * `release` to free the idle buffers once a job is done.
 */
export const gemmScratch = {
  bytes(): number {
    return Number(loadKernels()?.fns.steerlm_gemm_scratch_bytes() ?? 0);
  },
  release(): void {
    loadKernels()?.fns.steerlm_gemm_scratch_release();
  },
};

/**
 * f32 products that ran on AMX tiles since the kernels loaded, each f32 operand split into three exact bf16 parts
 * (native/gemm.c): a bf16 a (a frozen LoRA base) times an f32 b as three products, at 2.5-2.8 times the f32
 * FMAs' rate; an f32 a times an f32 b as six, at 1.2-1.8 times. f32-accurate.
 */
export function amxF32Products(): number {
  return Number(loadKernels()?.fns.steerlm_gemm_split_products() ?? 0);
}
