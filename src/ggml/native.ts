/**
 * Native code is reached only from src/ggml/native*.ts: this file (koffi declarations over the ggml shared
 * libraries that node-llama-cpp@3.21.1 ships, llama.cpp bundle commit 80fb11ac), native-kernels.ts
 * (steerlm's own kernel library) and native-cuda.ts (ggml's CUDA backend, opt-in); the C types they use are
 * in ffi.ts. Every prototype, struct layout and enum value is copied from that commit's ggml/include/*.h; they
 * are ABI-fragile, which is why node-llama-cpp is pinned exactly. Each prototype also types its function
 * (ffi.ts `Bound`). Nothing outside src/ggml imports these files (test/layering.test.ts checks).
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import koffi from "koffi";
import { SteerlmError } from "../util/errors.js";
import type { RopeMode } from "./context.js";
import { type Bound, declare, type LogCallback } from "./ffi.js";
import { DTYPES, type DType, ggmlType } from "./tensor.js";

const byCode = new Map<number, DType>(DTYPES.map((t) => [ggmlType(t).id, t]));

export function dtypeCode(t: DType): number {
  return ggmlType(t).id;
}

export function dtypeFromCode(code: number): DType {
  const t = byCode.get(code);
  if (!t) throw new Error(`unsupported ggml tensor type ${code}`);
  return t;
}

/** ggml_rope_ext's mode (ggml.h: 0, or GGML_ROPE_TYPE_NEOX). */
export const GGML_ROPE_TYPE: Readonly<Record<RopeMode, number>> = { normal: 0, neox: 2 };
/** ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5. */
export const GGML_LOG_LEVEL = { debug: 1, info: 2, warn: 3, error: 4, cont: 5 } as const;

/**
 * Folder of an installed package, e.g. one of node-llama-cpp's binary packages (they export nothing
 * resolvable, so it is looked up along the module search paths); undefined when not installed.
 */
export function packageDir(pkg: string): string | undefined {
  const require = createRequire(import.meta.url);
  return (require.resolve.paths(pkg) ?? []).map((p) => join(p, pkg)).find((p) => existsSync(p));
}

/** Folder of node-llama-cpp's prebuilt CPU ggml libraries (STEERLM_GGML_BIN_DIR overrides). */
function binDir(): string {
  if (process.env.STEERLM_GGML_BIN_DIR) return process.env.STEERLM_GGML_BIN_DIR;
  const pkg = "@node-llama-cpp/linux-x64";
  const root = packageDir(pkg);
  if (!root) {
    throw new SteerlmError(
      `cannot find ${pkg}`,
      "run `npm install` (node-llama-cpp ships the ggml libraries)",
    );
  }
  return join(root, "bins", "linux-x64");
}

const BASE_DECLS = [
  "void ggml_log_set(ggml_log_callback_t *log_callback, void *user_data_or_null)",
  "ggml_threadpool_params ggml_threadpool_params_default(int n_threads)",
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
  "ggml_tensor * ggml_soft_max_ext(ggml_context *ctx, ggml_tensor *a, ggml_tensor *mask_or_null, float scale, float max_bias)",
  "ggml_tensor * ggml_rope_ext(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c_or_null, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
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
  // custom ops (steerlm's own kernels, native/*.c); userdata is void * in ggml.h, a word of parameter here
  // (ffi.ts userdataWord)
  "ggml_tensor * ggml_custom_4d(ggml_context *ctx, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, ggml_tensor **args, int n_args, ggml_custom_op_t *fun, int n_tasks, ggml_userdata *userdata_or_null)",
  "ggml_tensor * ggml_custom_inplace(ggml_context *ctx, ggml_tensor *a, ggml_tensor **args, int n_args, ggml_custom_op_t *fun, int n_tasks, ggml_userdata *userdata_or_null)",
  // explicit backward ops (the hand-written backward pass uses mul_mat instead of ggml's out_prod)
  "ggml_tensor * ggml_add_inplace(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_scale_inplace(ggml_context *ctx, ggml_tensor *a, float s)",
  "ggml_tensor * ggml_rms_norm_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, float eps)",
  "ggml_tensor * ggml_rope_ext_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c_or_null, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
  "ggml_tensor * ggml_soft_max_ext_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, float scale, float max_bias)",
  "ggml_tensor * ggml_silu_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  "ggml_tensor * ggml_get_rows_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b, ggml_tensor *c)",
  "ggml_tensor * ggml_repeat_back(ggml_context *ctx, ggml_tensor *a, ggml_tensor *b)",
  // optimiser
  "ggml_tensor * ggml_opt_step_adamw(ggml_context *ctx, ggml_tensor *a, ggml_tensor *grad, ggml_tensor *m, ggml_tensor *v, ggml_tensor *adamw_params)",
  // graphs
  "ggml_cgraph * ggml_new_graph_custom(ggml_context *ctx, size_t size, bool grads)",
  "void ggml_build_forward_expand(ggml_cgraph *g, ggml_tensor *t)",
  "void ggml_build_backward_expand(ggml_context *ctx, ggml_cgraph *g, ggml_tensor **grad_accs)",
  "ggml_tensor * ggml_graph_get_grad(ggml_cgraph *g, ggml_tensor *t)",
  "ggml_tensor * ggml_graph_node(ggml_cgraph *g, int i)",
  "void ggml_graph_reset(ggml_cgraph *g)",
  "int ggml_graph_n_nodes(ggml_cgraph *g)",
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

/** Every CPU variant library exports its score for this machine (0: it cannot run here). */
const SCORE_DECL = ["int ggml_backend_score()"] as const;

const CPU_DECLS = [
  "ggml_backend * ggml_backend_cpu_init()",
  "ggml_threadpool * ggml_threadpool_new(ggml_threadpool_params *params)",
  "void ggml_threadpool_free(ggml_threadpool *threadpool)",
  "void ggml_backend_cpu_set_threadpool(ggml_backend *b, ggml_threadpool *threadpool)",
  "void ggml_backend_cpu_set_n_threads(ggml_backend *b, int n)",
] as const;

export interface NativeGgml {
  base: Bound<typeof BASE_DECLS>;
  cpu: Bound<typeof CPU_DECLS>;
  /** Chosen CPU variant, e.g. "sapphirerapids", and its ggml_backend_score. */
  cpuVariant: string;
  cpuScore: number;
  binDir: string;
  setLogger(fn: (level: number, text: string) => void): void;
}

let loaded: NativeGgml | undefined;
// keeps the registered log callback alive for the life of the process (ggml may log from any call)
let logHandle: LogCallback | undefined;

/**
 * Loads libggml-base and the best CPU variant the way ggml_backend_load_best does: dlopen each
 * libggml-cpu-*.so, ask its ggml_backend_score(), keep the highest. STEERLM_GGML_CPU=<variant> overrides.
 */
export function loadNative(): NativeGgml {
  if (loaded) return loaded;
  const dir = binDir();
  if (!existsSync(join(dir, "libggml-base.so"))) {
    throw new SteerlmError(`ggml libraries not found in ${dir}`, "this build supports linux-x64 only");
  }
  const base = declare(koffi.load(join(dir, "libggml-base.so")), BASE_DECLS);
  let best = "";
  let bestScore = -1;
  const forced = process.env.STEERLM_GGML_CPU;
  for (const f of readdirSync(dir).sort()) {
    const m = /^libggml-cpu-(.+)\.so$/.exec(f);
    if (!m?.[1]) continue;
    if (forced && m[1] !== forced) continue;
    const score = declare(koffi.load(join(dir, f)), SCORE_DECL).ggml_backend_score();
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
  const cpu = declare(koffi.load(join(dir, `libggml-cpu-${best}.so`)), CPU_DECLS);
  loaded = {
    base,
    cpu,
    cpuVariant: best,
    cpuScore: bestScore,
    binDir: dir,
    setLogger(fn) {
      // koffi.register gives the trampoline's address untyped: it is the ggml_log_callback_t it was made as
      logHandle = koffi.register(
        (level: number, text: string | null) => fn(level, text ?? ""),
        koffi.pointer("ggml_log_callback_t"),
      ) as LogCallback;
      base.ggml_log_set(logHandle, null);
    },
  };
  return loaded;
}
