/**
 * The one place that talks to native code: koffi declarations over the ggml shared libraries that
 * node-llama-cpp@3.21.1 ships (llama.cpp bundle commit 80fb11ac). Every prototype, struct layout and enum
 * value below is copied from that commit's ggml/include/*.h; they are ABI-fragile, which is why
 * node-llama-cpp is pinned exactly. Nothing outside src/ggml imports this file.
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import koffi, { type LibraryHandle, type TypeObject } from "koffi";
import { SteerlmError } from "../util/errors.js";

/** Raw native address (koffi 3 represents pointers as bigint). Never leaves src/ggml. */
export type Ptr = bigint;

// ggml_type values (ggml.h enum ggml_type)
export const GGML_TYPE = { f32: 0, f16: 1, q8_0: 8, i32: 26, bf16: 30 } as const;
export const GGML_ROPE_TYPE = { normal: 0, neox: 2 } as const;
/** ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5. */
export const GGML_LOG_LEVEL = { debug: 1, info: 2, warn: 3, error: 4, cont: 5 } as const;

/** struct ggml_threadpool_params: bool cpumask[512]; int n_threads; int prio; uint32 poll; bool strict_cpu, paused. */
export const THREADPOOL_PARAMS_SIZE = 528;
export const THREADPOOL_POLL_OFFSET = 520;

/** Byte offsets inside struct ggml_tensor (ggml.h): type(4)+pad(4)+buffer(8), then ne[4] and nb[4]. */
export const TENSOR_NE_OFFSET = 16;
export const TENSOR_NB_OFFSET = 48;
/** struct ggml_tensor's `enum ggml_op op` follows nb[4]; GGML_OP_CUSTOM is ggml_custom_4d's op. */
export const TENSOR_OP_OFFSET = 80;
export const GGML_OP_CUSTOM = 95;

function binDir(variant: "cpu" | "cuda"): string {
  if (process.env.STEERLM_GGML_BIN_DIR) return process.env.STEERLM_GGML_BIN_DIR;
  const require = createRequire(import.meta.url);
  const pkg = variant === "cuda" ? "@node-llama-cpp/linux-x64-cuda" : "@node-llama-cpp/linux-x64";
  // the binary packages export nothing resolvable, so look for the folder along the module search paths
  const root = (require.resolve.paths(pkg) ?? []).map((p) => join(p, pkg)).find((p) => existsSync(p));
  if (!root) {
    throw new SteerlmError(
      `cannot find ${pkg}`,
      "run `npm install` (node-llama-cpp ships the ggml libraries)",
    );
  }
  const sub = variant === "cuda" ? "linux-x64-cuda" : "linux-x64";
  return join(root, "bins", sub);
}

type KoffiFn = ReturnType<LibraryHandle["func"]>;

function declare(lib: LibraryHandle, decls: readonly string[]): Record<string, KoffiFn> {
  const out: Record<string, KoffiFn> = {};
  for (const d of decls) {
    const m = /([A-Za-z_0-9]+)\s*\(/.exec(d);
    if (!m?.[1]) throw new Error(`bad native declaration: ${d}`);
    out[m[1]] = lib.func(d);
  }
  return out;
}

for (const n of [
  "ggml_context",
  "ggml_tensor",
  "ggml_cgraph",
  "ggml_backend",
  "ggml_backend_buffer",
  "ggml_backend_buffer_type",
  "ggml_gallocr",
]) {
  koffi.opaque(n);
}
const initParams = koffi.struct("ggml_init_params", {
  mem_size: "size_t",
  mem_buffer: "void *",
  no_alloc: "bool",
});
const logCallback = koffi.proto("void ggml_log_callback_t(int level, const char *text, void *user_data)");

const BASE_DECLS = [
  "void ggml_log_set(ggml_log_callback_t *cb, void *ud)",
  "void ggml_threadpool_params_init(void *p, int n_threads)",
  "ggml_context * ggml_init(ggml_init_params params)",
  "void ggml_free(ggml_context *ctx)",
  "size_t ggml_tensor_overhead()",
  "size_t ggml_graph_overhead_custom(size_t size, bool grads)",
  "ggml_tensor * ggml_new_tensor_4d(ggml_context *ctx, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3)",
  "ggml_tensor * ggml_set_name(ggml_tensor *t, const char *name)",
  "void ggml_set_param(ggml_tensor *t)",
  "void ggml_set_loss(ggml_tensor *t)",
  "void ggml_set_input(ggml_tensor *t)",
  "void ggml_set_output(ggml_tensor *t)",
  "bool ggml_is_contiguous(ggml_tensor *t)",
  "size_t ggml_nbytes(ggml_tensor *t)",
  // element-wise and reductions
  "ggml_tensor * ggml_add(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_sub(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_mul(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_div(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_scale(ggml_context *ctx, ggml_tensor *a, float s)",
  "ggml_tensor * ggml_scale_bias(ggml_context *ctx, ggml_tensor *a, float s, float b)",
  "ggml_tensor * ggml_sqr(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_sqrt(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_log(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_sum(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_clamp(ggml_context *ctx, ggml_tensor *a, float min, float max)",
  "ggml_tensor * ggml_silu(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_swiglu_split(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_repeat(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  // linear algebra, normalisation, attention
  "ggml_tensor * ggml_mul_mat(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_rms_norm(ggml_context *ctx, ggml_tensor *a, float eps)",
  "ggml_tensor * ggml_get_rows(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_soft_max_ext(ggml_context *ctx, ggml_tensor *a, ggml_tensor *mask, float scale, float max_bias)",
  "ggml_tensor * ggml_rope_ext(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
  // layout
  "ggml_tensor * ggml_reshape_4d(ggml_context *ctx, ggml_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3)",
  "ggml_tensor * ggml_permute(ggml_context *ctx, ggml_tensor *a, int ax0, int ax1, int ax2, int ax3)",
  "ggml_tensor * ggml_cont(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_pad(ggml_context *ctx, ggml_tensor *a, int p0, int p1, int p2, int p3)",
  "ggml_tensor * ggml_concat(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, int dim)",
  "ggml_tensor * ggml_view_3d(ggml_context *ctx, ggml_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2, size_t offset)",
  "ggml_tensor * ggml_cpy(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_cast(ggml_context *ctx, ggml_tensor *a, int type)",
  "ggml_tensor * ggml_transpose(ggml_context *ctx, ggml_tensor *a)",
  "ggml_tensor * ggml_out_prod(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  // custom ops (steerlm's own kernels, native/*.c); args is a ggml_tensor *[n_args]
  "ggml_tensor * ggml_custom_4d(ggml_context *ctx, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, void *args, int n_args, void *fun, int n_tasks, void *userdata)",
  "void * ggml_get_data(ggml_tensor *t)",
  // explicit backward ops (the hand-written backward pass uses mul_mat instead of ggml's out_prod)
  "ggml_tensor * ggml_add_inplace(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_scale_inplace(ggml_context *ctx, ggml_tensor *a, float s)",
  "ggml_tensor * ggml_rms_norm_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, float eps)",
  "ggml_tensor * ggml_rope_ext_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
  "ggml_tensor * ggml_soft_max_ext_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, float scale, float max_bias)",
  "ggml_tensor * ggml_silu_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_get_rows_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c)",
  "ggml_tensor * ggml_repeat_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  // optimiser
  "ggml_tensor * ggml_opt_step_adamw(ggml_context *ctx, ggml_tensor *a, ggml_tensor *grad, ggml_tensor *m, ggml_tensor *v, ggml_tensor *adamw_params)",
  // graphs
  "ggml_cgraph * ggml_new_graph_custom(ggml_context *ctx, size_t size, bool grads)",
  "void ggml_build_forward_expand(ggml_cgraph *g, ggml_tensor *t)",
  "void ggml_build_backward_expand(ggml_context *ctx, ggml_cgraph *g, void *grad_accs)",
  "ggml_tensor * ggml_graph_get_grad(ggml_cgraph *g, ggml_tensor *t)",
  "ggml_tensor * ggml_graph_node(ggml_cgraph *g, int i)",
  "void ggml_graph_reset(ggml_cgraph *g)",
  "int ggml_graph_n_nodes(ggml_cgraph *g)",
  "int ggml_graph_size(ggml_cgraph *g)",
  // backend
  "ggml_backend_buffer_type * ggml_backend_get_default_buffer_type(ggml_backend *backend)",
  "ggml_backend_buffer * ggml_backend_alloc_ctx_tensors(ggml_context *ctx, ggml_backend *backend)",
  "void ggml_backend_buffer_free(ggml_backend_buffer *buf)",
  "size_t ggml_backend_buffer_get_size(ggml_backend_buffer *buf)",
  "void ggml_backend_tensor_set(ggml_tensor *t, const void *data, size_t offset, size_t size)",
  "void ggml_backend_tensor_get(ggml_tensor *t, _Out_ void *data, size_t offset, size_t size)",
  "int ggml_backend_graph_compute(ggml_backend *backend, ggml_cgraph *g)",
  "void ggml_backend_free(ggml_backend *backend)",
  "const char * ggml_backend_name(ggml_backend *backend)",
  "ggml_gallocr * ggml_gallocr_new(ggml_backend_buffer_type *buft)",
  "bool ggml_gallocr_alloc_graph(ggml_gallocr *galloc, ggml_cgraph *g)",
  "size_t ggml_gallocr_get_buffer_size(ggml_gallocr *galloc, int buffer_id)",
  "void ggml_gallocr_free(ggml_gallocr *galloc)",
] as const;

const CPU_DECLS = [
  "ggml_backend * ggml_backend_cpu_init()",
  "void * ggml_threadpool_new(void *params)",
  "void ggml_threadpool_free(void *threadpool)",
  "void ggml_backend_cpu_set_threadpool(ggml_backend *b, void *threadpool)",
  "void ggml_backend_cpu_set_n_threads(ggml_backend *b, int n)",
] as const;

/** A declared C function; `async` runs it on a libuv worker thread and calls back (err, result). */
type NativeFn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };
/** Declared functions by name. Arguments are checked by koffi against the C prototype at call time. */
type Fns<_T> = Record<string, NativeFn>;

export interface NativeGgml {
  base: Fns<typeof BASE_DECLS>;
  cpu: Fns<typeof CPU_DECLS>;
  /** Chosen CPU variant, e.g. "sapphirerapids", and its ggml_backend_score. */
  cpuVariant: string;
  cpuScore: number;
  binDir: string;
  initParams: TypeObject;
  setLogger(fn: (level: number, text: string) => void): void;
  /** Reads `count` int64/uint64 values at `offset` bytes into the struct at `ptr`. */
  readI64(ptr: Ptr, offset: number, count: number): number[];
  /** Reads one int32 at `offset` bytes into the struct at `ptr` (struct ggml_tensor starts with its type). */
  readI32(ptr: Ptr, offset: number): number;
}

let loaded: NativeGgml | undefined;
// keeps the registered log callback alive for the life of the process (ggml may log from any call)
let logHandle: unknown;

/**
 * Loads libggml-base and the best CPU variant the way ggml_backend_load_best does: dlopen each
 * libggml-cpu-*.so, ask its ggml_backend_score(), keep the highest. STEERLM_GGML_CPU=<variant> overrides.
 */
export function loadNative(): NativeGgml {
  if (loaded) return loaded;
  const dir = binDir("cpu");
  if (!existsSync(join(dir, "libggml-base.so"))) {
    throw new SteerlmError(`ggml libraries not found in ${dir}`, "this build supports linux-x64 only");
  }
  const baseLib = koffi.load(join(dir, "libggml-base.so"));
  const base = declare(baseLib, BASE_DECLS) as Fns<typeof BASE_DECLS>;
  let best = "";
  let bestScore = -1;
  const forced = process.env.STEERLM_GGML_CPU;
  for (const f of readdirSync(dir).sort()) {
    const m = /^libggml-cpu-(.+)\.so$/.exec(f);
    if (!m?.[1]) continue;
    if (forced && m[1] !== forced) continue;
    const lib = koffi.load(join(dir, f));
    const score = Number(lib.func("int ggml_backend_score()")());
    if (score > bestScore) {
      best = m[1];
      bestScore = score;
    }
  }
  if (!best || bestScore <= 0) {
    throw new SteerlmError(
      `no usable ggml CPU variant in ${dir}${forced ? ` (STEERLM_GGML_CPU=${forced})` : ""}`,
    );
  }
  const cpuLib = koffi.load(join(dir, `libggml-cpu-${best}.so`));
  const cpu = declare(cpuLib, CPU_DECLS) as Fns<typeof CPU_DECLS>;
  loaded = {
    base,
    cpu,
    cpuVariant: best,
    cpuScore: bestScore,
    binDir: dir,
    initParams,
    setLogger(fn) {
      logHandle = koffi.register(
        (level: number, text: string | null) => fn(level, text ?? ""),
        koffi.pointer(logCallback),
      );
      base.ggml_log_set(logHandle, null);
    },
    readI64(ptr, offset, count) {
      const v = koffi.decode(ptr, offset, "int64_t", count) as Array<number | bigint>;
      return Array.from(v, Number);
    },
    readI32(ptr, offset) {
      return Number(koffi.decode(ptr, offset, "int32_t"));
    },
  };
  return loaded;
}

/** ggml_custom_4d's n_tasks for "every thread of the pool" (GGML_N_TASKS_MAX). */
export const GGML_N_TASKS_MAX = -1;
/** Offsets (ne, nb, src, data) of struct ggml_tensor and the kernel-set version native/kernels.h expects. */
export const KERNELS_ABI = [16, 48, 152, 248, 1] as const;

export interface NativeKernels {
  path: string;
  /** Function pointers of the custom ops, for ggml_custom_4d. */
  relayout: Ptr;
  /** GEMMs with f32 accumulation; null where the CPU lacks AVX512-BF16 / AVX-512. */
  gemmBf16: Ptr | null;
  gemmF32: Ptr | null;
  /** a f16 / bf16 / Q8_0 (a frozen base) times b f32: a widened exactly to f32, then the f32 GEMM. */
  gemmF16: Ptr | null;
  gemmBf16F32: Ptr | null;
  gemmQ8_0: Ptr | null;
  /** Held so that koffi never unloads the library while graphs point into it. */
  library: LibraryHandle;
}

let kernels: NativeKernels | null | undefined;
let kernelsOff = false;

/**
 * Tests only (graphs built afterwards): "native" as loaded; "generic" the portable code paths a CPU
 * without AVX-512 runs (scalar relayout, ggml's GEMMs); "off" plain ggml ops, as without the library.
 */
export function setKernelsModeForTesting(mode: "native" | "generic" | "off"): void {
  kernelsOff = mode === "off";
  kernels = undefined;
  const k = loadKernels();
  if (!k) return;
  k.library.func("void steerlm_kernels_set_generic(int on)")(mode === "generic" ? 1 : 0);
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
  const abi = new BigInt64Array(5);
  lib.func("void steerlm_kernels_abi(_Out_ int64_t *out)")(abi);
  const got = Array.from(abi, Number);
  if (got.join() !== KERNELS_ABI.join()) {
    throw new SteerlmError(
      `${path} was built for another ggml tensor layout (${got.join(",")}, expected ${KERNELS_ABI.join(",")})`,
      "rebuild it: `npm run build:native`",
    );
  }
  const fn = lib.func("void *steerlm_kernel(const char *name)");
  const relayout = fn("relayout") as Ptr | null;
  if (!relayout)
    throw new SteerlmError(`${path} has no relayout kernel`, "rebuild it: `npm run build:native`");
  kernels = {
    path,
    relayout,
    gemmBf16: (fn("gemm_bf16") as Ptr | null) || null,
    gemmF32: (fn("gemm_f32") as Ptr | null) || null,
    gemmF16: (fn("gemm_f16") as Ptr | null) || null,
    gemmBf16F32: (fn("gemm_bf16_f32") as Ptr | null) || null,
    gemmQ8_0: (fn("gemm_q8_0") as Ptr | null) || null,
    library: lib,
  };
  return kernels;
}

// ---- CUDA (opt-in). Nothing below runs unless a Backend asks for device "cuda" or "auto". ----

/** Why the CUDA backend could not be opened: the package, the NVIDIA driver, the CUDA runtime, or a device. */
export type CudaMissing = "package" | "driver" | "runtime" | "device";

export class CudaUnavailableError extends SteerlmError {
  override name = "CudaUnavailableError";
  constructor(
    readonly missing: CudaMissing,
    message: string,
    hint?: string,
  ) {
    super(message, hint);
  }
}

const CUDA_DECLS = [
  "int ggml_backend_cuda_get_device_count()",
  // outputs as void *: koffi passes a typed array's own memory, as for ggml_threadpool_params_init
  "void ggml_backend_cuda_get_device_description(int device, void *description, size_t size)",
  "void ggml_backend_cuda_get_device_memory(int device, void *free, void *total)",
  "ggml_backend * ggml_backend_cuda_init(int device)",
] as const;

/** libggml-base functions only a non-CPU backend needs (declared here so that the CPU path never binds them). */
const DEVICE_BASE_DECLS = [
  "bool ggml_backend_supports_op(ggml_backend *backend, ggml_tensor *op)",
  "const char * ggml_op_desc(ggml_tensor *t)",
] as const;

export interface NativeCuda {
  cuda: Fns<typeof CUDA_DECLS>;
  base: Fns<typeof DEVICE_BASE_DECLS>;
  /** The libggml-cuda.so that loaded (node-llama-cpp's CUDA 13 build, or its CUDA 12 fallback). */
  library: string;
  deviceCount: number;
  /** Runtime libraries preloaded from STEERLM_CUDA_LIB_DIR or a CUDA toolkit folder. */
  preloaded: string[];
}

/**
 * The two builds node-llama-cpp ships, in the order it tries them: @node-llama-cpp/linux-x64-cuda (CUDA 13:
 * libcudart.so.13, libcublas.so.13) and the CUDA 12 "fallback" in @node-llama-cpp/linux-x64-cuda-ext.
 * STEERLM_GGML_CUDA_DIR names one folder holding libggml-cuda.so instead.
 */
function cudaCandidates(): string[] {
  const forced = process.env.STEERLM_GGML_CUDA_DIR;
  if (forced) return [join(forced, "libggml-cuda.so")].filter((p) => existsSync(p));
  const require = createRequire(import.meta.url);
  const find = (pkg: string) =>
    (require.resolve.paths(pkg) ?? []).map((p) => join(p, pkg)).find((p) => existsSync(p));
  const out: string[] = [];
  const main = find("@node-llama-cpp/linux-x64-cuda");
  if (main) out.push(join(main, "bins", "linux-x64-cuda", "libggml-cuda.so"));
  const ext = find("@node-llama-cpp/linux-x64-cuda-ext");
  if (ext) out.push(join(ext, "bins", "linux-x64-cuda", "fallback", "libggml-cuda.so"));
  return out.filter((p) => existsSync(p));
}

/** The runtime libraries a libggml-cuda.so needs besides the driver, by CUDA major version. */
const CUDA_RUNTIME_LIBS = (major: number) => [
  `libcudart.so.${major}`,
  `libcublasLt.so.${major}`,
  `libcublas.so.${major}`,
];

/**
 * Folders searched for the CUDA runtime: STEERLM_CUDA_LIB_DIR (colon-separated), then the usual toolkit
 * folders. The dynamic loader's own path (LD_LIBRARY_PATH, ld.so.conf) is always tried as well: a library
 * preloaded here by full path satisfies libggml-cuda.so's dependency on its soname.
 */
function cudaLibDirs(): string[] {
  const env = (process.env.STEERLM_CUDA_LIB_DIR ?? "").split(":").filter(Boolean);
  const toolkits = ["/usr/local/cuda"];
  try {
    for (const d of readdirSync("/usr/local").sort().reverse())
      if (d.startsWith("cuda-")) toolkits.push(join("/usr/local", d));
  } catch {
    // no /usr/local: nothing to add
  }
  const std = toolkits.flatMap((t) => [
    join(t, "lib64"),
    join(t, "lib"),
    join(t, "targets/x86_64-linux/lib"),
  ]);
  return [...env, ...std].filter((d) => existsSync(d));
}

function loadError(e: unknown): string {
  return e instanceof Error ? e.message.replace(/^Failed to load shared library: /, "") : String(e);
}

let cudaLoaded: NativeCuda | undefined;
// every library opened for CUDA stays referenced: ggml's function tables point into them
const cudaHandles: LibraryHandle[] = [];

/**
 * Opens ggml's CUDA backend library: checks for the package, then the driver (libcuda.so.1), preloads the
 * CUDA runtime it needs, dlopens libggml-cuda.so (which binds to the libggml-base.so already loaded by
 * loadNative, same soname, same file) and counts devices. `ggmlLog` returns what ggml logged meanwhile, for
 * the error message. Throws CudaUnavailableError naming what is missing. Never called on the CPU path.
 */
export function loadCudaNative(ggmlLog: () => string[] = () => []): NativeCuda {
  if (cudaLoaded) return cudaLoaded;
  // a process does not gain a driver or a GPU while it runs: answer a repeated question from the cache
  const key = `${process.env.STEERLM_GGML_CUDA_DIR ?? ""}|${process.env.STEERLM_CUDA_LIB_DIR ?? ""}`;
  const known = cudaFailures.get(key);
  if (known) throw known;
  try {
    cudaLoaded = openCuda(ggmlLog);
    return cudaLoaded;
  } catch (e) {
    if (e instanceof CudaUnavailableError) cudaFailures.set(key, e);
    throw e;
  }
}
const cudaFailures = new Map<string, CudaUnavailableError>();

function openCuda(ggmlLog: () => string[]): NativeCuda {
  const n = loadNative(); // libggml-base first: libggml-cuda.so must bind to this very copy
  const candidates = cudaCandidates();
  if (candidates.length === 0) {
    throw new CudaUnavailableError(
      "package",
      process.env.STEERLM_GGML_CUDA_DIR
        ? `CUDA backend not found: no libggml-cuda.so in STEERLM_GGML_CUDA_DIR=${process.env.STEERLM_GGML_CUDA_DIR}`
        : "CUDA backend not installed: @node-llama-cpp/linux-x64-cuda has no libggml-cuda.so",
      "install it with `npm install @node-llama-cpp/linux-x64-cuda@3.21.1`, or use STEERLM_DEVICE=cpu",
    );
  }
  try {
    cudaHandles.push(koffi.load("libcuda.so.1"));
  } catch (e) {
    throw new CudaUnavailableError(
      "driver",
      `NVIDIA driver not found: libcuda.so.1 cannot be loaded (${loadError(e)})`,
      "install the NVIDIA driver (580 or newer for the CUDA 13 build), or use STEERLM_DEVICE=cpu",
    );
  }
  const failures: string[] = [];
  const noDevice: string[] = [];
  for (const library of candidates) {
    const major = library.includes("fallback") ? 12 : 13;
    const preloaded: string[] = [];
    for (const name of CUDA_RUNTIME_LIBS(major)) {
      const path = cudaLibDirs()
        .map((d) => join(d, name))
        .find((p) => existsSync(p));
      if (!path) continue; // the dynamic loader may still find it on its own path
      try {
        cudaHandles.push(koffi.load(path));
        preloaded.push(path);
      } catch (e) {
        failures.push(`${path}: ${loadError(e)}`);
      }
    }
    let lib: LibraryHandle;
    try {
      lib = koffi.load(library);
      cudaHandles.push(lib);
    } catch (e) {
      failures.push(`${library}: ${loadError(e)}`);
      continue;
    }
    const cuda = declare(lib, CUDA_DECLS) as Fns<typeof CUDA_DECLS>;
    const deviceCount = Number(cuda.ggml_backend_cuda_get_device_count());
    if (deviceCount < 1) {
      // e.g. a driver too old for this build's runtime: the next build (CUDA 12) may still work
      noDevice.push(library);
      continue;
    }
    const baseLib = koffi.load(join(n.binDir, "libggml-base.so"));
    cudaHandles.push(baseLib);
    const base = declare(baseLib, DEVICE_BASE_DECLS) as Fns<typeof DEVICE_BASE_DECLS>;
    return { cuda, base, library, deviceCount, preloaded };
  }
  if (noDevice.length > 0) {
    const said = [...new Set(ggmlLog().filter((l) => /cuda/i.test(l)))];
    throw new CudaUnavailableError(
      "device",
      `no CUDA device: ${noDevice.join(" and ")} loaded but found 0 devices${said.length ? ` (${said.join("; ")})` : ""}`,
      "check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use STEERLM_DEVICE=cpu",
    );
  }
  const missing = [...new Set(failures.join("\n").match(/lib[\w.+-]+\.so[.\d]*(?=: cannot open)/g) ?? [])];
  throw new CudaUnavailableError(
    "runtime",
    `CUDA runtime libraries not found${missing.length ? `: ${missing.join(", ")}` : ""} (${failures.join("; ")})`,
    "install the CUDA runtime and cuBLAS (CUDA 13, or 12 for the fallback build) or point STEERLM_CUDA_LIB_DIR at the folder that holds them; or use STEERLM_DEVICE=cpu",
  );
}
