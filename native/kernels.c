/*
 * The kernel library's entry points for the loader (src/ggml/native.ts): its ABI, and the custom ops by
 * name. Why these kernels exist: ggml has no fused "strided f32 -> contiguous f32/bf16, zero-padded" copy
 * (relayout.c), its CPU GEMMs end every output in a horizontal sum (gemm.c), the cross-entropy gradient
 * takes it three passes, one of them a per-element broadcast (loss.c), clipping + AdamW six (adamw.c),
 * SwiGLU's backward four (swiglu.c), the masked softmax six loops a row (softmax.c), RMSNorm's
 * row sums are scalar loops both ways (rmsnorm.c) and RoPE recomputes its angles in every op (rope.c).
 */
#define _GNU_SOURCE /* syscall() under -std=c11 */
#include "kernels.h"

#if defined(HAVE_AMX) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* The instruction sets the kernels may use (kernels.h's levels): the CPU's, capped by STEERLM_KERNELS_ISA
   (generic: the portable paths; avx2: no AVX-512; avx512: no AMX) or by the tests (steerlm_kernels_set_isa), so that every
   path runs on one CPU. */

/* What the kernels assume that the loader also knows (src/ggml/native-kernels.ts KERNELS_ABI), for its
   check: struct ggml_tensor's offsets, the ggml_type ids and ISA levels used, the kernel set's version. */
void steerlm_kernels_abi(int64_t out[KERNELS_ABI_WORDS]) {
    const int64_t abi[KERNELS_ABI_WORDS] = {
        (int64_t)offsetof(struct tensor_abi, type),
        (int64_t)offsetof(struct tensor_abi, ne),
        (int64_t)offsetof(struct tensor_abi, nb),
        (int64_t)offsetof(struct tensor_abi, op),
        (int64_t)offsetof(struct tensor_abi, src),
        (int64_t)offsetof(struct tensor_abi, data),
        TYPE_F32,
        TYPE_BF16,
        ISA_GENERIC,
        ISA_AVX2,
        ISA_AVX512,
        ISA_AMX,
        7, /* kernel set version: 5 adds the AMX level, 6 the count of f32 products run on AMX, 7 attention and the norms with a gain */
    };
    for (int i = 0; i < KERNELS_ABI_WORDS; i++) out[i] = abi[i];
}
static int cap = -1; /* -1: not read from the environment yet */

void steerlm_kernels_set_isa(int level) {
    cap = level;
}

static int cpu_level(void) {
#ifdef HAVE_X86
    static int level = -1;
    if (level < 0)
        level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? ISA_AVX512
                : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")
                    ? ISA_AVX2
                    : ISA_GENERIC;
    return level;
#else
    return ISA_GENERIC;
#endif
}

/* the cap: the tests' (steerlm_kernels_set_isa), else STEERLM_KERNELS_ISA's, else none (AMX where present) */
static int isa_cap(void) {
    if (cap < 0) {
        const char *isa = getenv("STEERLM_KERNELS_ISA");
        cap = !isa                        ? ISA_AMX
              : strcmp(isa, "generic") == 0 ? ISA_GENERIC
              : strcmp(isa, "avx2") == 0    ? ISA_AVX2
              : strcmp(isa, "avx512") == 0  ? ISA_AVX512
                                            : ISA_AMX;
    }
    return cap;
}

/* the vector level the kernels use (ISA_AVX512 at most; AMX is steerlm_have_amx) */
int steerlm_isa(void) {
    const int cpu = cpu_level(), c = isa_cap();
    return cpu < c ? cpu : c;
}

int steerlm_have_avx512(void) {
    return steerlm_isa() >= ISA_AVX512;
}

int steerlm_have_avx2(void) {
    return steerlm_isa() >= ISA_AVX2;
}

/* AMX-BF16: the CPU's (CPUID 7.0 EDX bits 22 and 24) and Linux's support for tile data (ARCH_GET_XCOMP_SUPP,
   which asks for nothing) */
static int amx_present(void) {
#if defined(HAVE_AMX) && defined(__linux__)
    static int present = -1;
    if (present < 0) {
        unsigned eax, ebx, ecx, edx;
        unsigned long features = 0;
        present = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx >> 22 & 1) && (edx >> 24 & 1) &&
                  syscall(SYS_arch_prctl, 0x1021 /* ARCH_GET_XCOMP_SUPP */, &features) == 0 && (features >> 18 & 1);
    }
    return present;
#else
    return 0;
#endif
}

/* ... and Linux's leave to use it, asked once for the process (ARCH_REQ_XCOMP_PERM; refused where a signal
   stack is too small for the tile state: the AVX512-BF16 kernel runs then) */
static int amx_usable(void) {
#if defined(HAVE_AMX) && defined(__linux__)
    static int usable = -1;
    if (usable < 0)
        usable = amx_present() && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
    return usable;
#else
    return 0;
#endif
}

/* whether the bf16 GEMM runs on tiles: the first call asks Linux for them */
int steerlm_have_amx(void) {
    return isa_cap() >= ISA_AMX && steerlm_have_bf16() && amx_usable();
}

/* whether it would, without asking */
int steerlm_amx_present(void) {
    return isa_cap() >= ISA_AMX && steerlm_have_bf16() && amx_present();
}

int steerlm_have_bf16(void) {
#ifdef HAVE_X86
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
    return have && steerlm_have_avx512();
#else
    return 0;
#endif
}

typedef void (*custom_op)(struct tensor_abi *dst, int ith, int nth, void *userdata);

/* Function pointers for ggml_custom_4d, by name; null for an unknown name or a kernel the CPU cannot run
   (the engine then keeps ggml's ops): the f32-b GEMMs need AVX2 or AVX-512, bf16 x bf16 AVX512-BF16,
   attention and the norms with a gain AVX-512. */
custom_op steerlm_kernel(const char *name) {
    if (strcmp(name, "relayout") == 0) return steerlm_relayout;
    if (strcmp(name, "cross_entropy_back") == 0) return steerlm_cross_entropy_back;
    if (strcmp(name, "sum_squares") == 0) return steerlm_sum_squares;
    if (strcmp(name, "adamw") == 0) return steerlm_adamw;
    if (strcmp(name, "swiglu_back") == 0) return steerlm_swiglu_back;
    if (strcmp(name, "soft_max") == 0) return steerlm_soft_max;
    if (strcmp(name, "rms_norm") == 0) return steerlm_rms_norm;
    if (strcmp(name, "rms_norm_back") == 0) return steerlm_rms_norm_back;
    if (strcmp(name, "rope_table") == 0) return steerlm_rope_table;
    if (strcmp(name, "rope") == 0) return steerlm_rope;
#ifdef HAVE_X86
    if (strcmp(name, "rms_norm_gain") == 0) return steerlm_have_avx512() ? steerlm_rms_norm_gain : 0;
    if (strcmp(name, "rms_norm_gain_back") == 0) return steerlm_have_avx512() ? steerlm_rms_norm_gain_back : 0;
    if (strcmp(name, "attention") == 0) return steerlm_have_avx512() ? steerlm_attention : 0;
    if (strcmp(name, "attention_back") == 0) return steerlm_have_avx512() ? steerlm_attention_back : 0;
    if (strcmp(name, "attention_neox") == 0) return steerlm_have_avx512() ? steerlm_attention_neox : 0;
    if (strcmp(name, "attention_back_neox") == 0) return steerlm_have_avx512() ? steerlm_attention_back_neox : 0;
    if (strcmp(name, "gemm_bf16") == 0) return steerlm_have_bf16() ? steerlm_gemm_bf16 : 0;
    if (!steerlm_have_avx2()) return 0;
    if (strcmp(name, "gemm_f32") == 0) return steerlm_gemm_f32;
    if (strcmp(name, "gemm_f32_into") == 0) return steerlm_gemm_f32_into;
    if (strcmp(name, "gemm_f16") == 0) return steerlm_gemm_f16;
    if (strcmp(name, "gemm_q8_0") == 0) return steerlm_gemm_q8_0;
    if (strcmp(name, "gemm_bf16_f32") == 0) return steerlm_gemm_bf16_f32;
#endif
    return 0;
}
