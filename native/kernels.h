/*
 * steerlm's own CPU kernels, run inside ggml graphs as custom ops (ggml_custom_4d): what they share.
 * Built at install time by scripts/build-native.mjs into one library; when it is absent the engine uses
 * plain ggml ops instead. The tensor layout below mirrors struct ggml_tensor of the ggml release
 * node-llama-cpp@3.21.1 ships (pinned); src/ggml/native.ts checks the offsets against the live library
 * before any kernel runs.
 */
#ifndef STEERLM_KERNELS_H
#define STEERLM_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif
/* AMX's intrinsics come with GCC 11 and clang 12; with an older compiler the AVX512-BF16 kernel runs everywhere */
#if defined(HAVE_X86) && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#define HAVE_AMX 1
#endif

struct tensor_abi {
    int32_t type;
    void *buffer;
    int64_t ne[4];
    size_t nb[4];
    int32_t op;
    int32_t op_params[16];
    int32_t flags;
    struct tensor_abi *src[10];
    struct tensor_abi *view_src;
    size_t view_offs;
    void *data;
};

enum { TYPE_F32 = 0, TYPE_BF16 = 30 };

/* instruction-set levels: steerlm_isa(), the tests' cap, the peak probe's report */
enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_AMX = 3 };

#define KERNELS_ABI_WORDS 13

/* A custom op's 32-bit parameter, passed as its userdata word (src/ggml/ffi.ts userdataBits, userdataWord) */
static inline uint32_t userdata_bits(void *userdata) {
    return (uint32_t)(uintptr_t)userdata;
}
static inline float userdata_float(void *userdata) {
    const uint32_t bits = userdata_bits(userdata);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Thread ith's share [lo, hi) of n items split evenly over nth threads, every share but the last a multiple of
   `align` items (whole vectors) */
struct share {
    int64_t lo, hi;
};
static inline struct share thread_share(int64_t n, int ith, int nth, int64_t align) {
    const int64_t per = ((n + nth - 1) / nth + align - 1) / align * align;
    const int64_t lo = per * ith < n ? per * ith : n;
    return (struct share){lo, lo + per < n ? lo + per : n};
}

/* CPU features, probed once, capped as kernels.c says: the level (0 portable, 1 AVX2 + FMA + F16C, 2 AVX-512
   F+BW); AVX-512 (the register transposes, the wide kernels), AVX2 (the GEMMs' other variant), AVX512-BF16
   (VDPBF16PS) */
int steerlm_isa(void);
int steerlm_have_avx512(void);
int steerlm_have_avx2(void);
int steerlm_have_bf16(void);
int steerlm_have_amx(void);
int steerlm_amx_present(void);

/* Every kernel runs with subnormals flushed to zero (MXCSR's FTZ and DAZ) and gives the thread its mode back:
   on Intel cores each instruction that makes or reads a subnormal takes a microcode assist of ~150 cycles
   (the f32 GEMM ran ~150x slower on subnormal operands on Sapphire Rapids, and a causal mask's -inf
   made one for half of attention's scores). What is lost lies below FLT_MIN, 1.2e-38. */
#ifdef HAVE_X86
static inline unsigned subnormals_off(void) {
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
    return csr;
}
static inline void subnormals_restore(unsigned csr) {
    _mm_setcsr(csr);
}
#else
static inline unsigned subnormals_off(void) {
    return 0;
}
static inline void subnormals_restore(unsigned csr) {
    (void)csr;
}
#endif

/* Defines the custom op steerlm_<name> (declared below) around the body that follows the macro, run flushed */
#define KERNEL(name)                                                                        \
    static void name##_flushed(struct tensor_abi *dst, int ith, int nth, void *userdata);   \
    void steerlm_##name(struct tensor_abi *dst, int ith, int nth, void *userdata) {         \
        const unsigned csr = subnormals_off();                                             \
        name##_flushed(dst, ith, nth, userdata);                                           \
        subnormals_restore(csr);                                                           \
    }                                                                                      \
    static void name##_flushed

#ifdef HAVE_X86
/* lanes [0, left) of a 16-lane vector: all of them from 16 on, none at 0 or below */
static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* e^x to about 1 ulp: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two so that n·ln2 is exact), a degree-7
   Taylor polynomial for e^r (its remainder is below 2^-27 there), and 2^n applied by VSCALEFPS, which
   gives inf and 0 where e^x overflows or underflows (0 from FLT_MIN down: kernels run flushed, KERNEL), and
   passes NaN on. */
__attribute__((target("avx512f"))) static inline __m512 exp_avx512(__m512 x) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x); /* ln2's high part: 9 bits */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);   /* ln2 − 0.693359375 */
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* e^(x − top) for a softmax row's entries against its maximum (or log-sum-exp): below -104 e^d is 0 in f32, and the
   clamp keeps exp's 2^n finite for a masked -inf (max(-104, NaN) is NaN) */
__attribute__((target("avx512f"))) static inline __m512 exp_below_avx512(__m512 x, __m512 top) {
    return exp_avx512(_mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_sub_ps(x, top)));
}

/* AVX2 (the CPUs without AVX-512): the same building blocks on 8 lanes */
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/* lanes [0, left) of 8, as a maskload/maskstore mask: all of them from 8 on, none at 0 or below */
TARGET_AVX2 static inline __m256i lanes8(int64_t left) {
    const int n = left >= 8 ? 8 : left <= 0 ? 0 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

TARGET_AVX2 static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* e^x as exp_avx512, without VSCALEFPS: x clamped to [-104, 89] (NaN kept), where e^x is 0 or inf in f32 at
   the ends, and 2^n applied as two normal powers of two, so that overflow gives inf and underflow 0 */
TARGET_AVX2 static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* n in [-150, 129]: n1 = floor(n/2) and n - n1 both within a normal exponent's range */
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* r[j] = element j of every r[i]: an 8x8 transpose of 32-bit elements in three shuffle stages */
TARGET_AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    /* t[4h+q] for rows 4h..4h+3: pairs of rows' elements 0,1,4,5 (q = 0, 2) and 2,3,6,7 (q = 1, 3) */
    for (int h = 0; h < 2; h++) {
        s[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
        s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    /* s[4h+q], 128-bit lane l, holds element 4l+q of rows 4h..4h+3 */
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x31);
    }
}

/* t[j] = element j of every a[i] (a 16x16 transpose of 32-bit elements), in four shuffle stages */
__attribute__((target("avx512f"))) static inline void transpose16(const __m512 a[16], __m512 t[16]) {
    __m512 b[16], c[16];
    for (int k = 0; k < 8; k++) {
        b[2 * k] = _mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]);
        b[2 * k + 1] = _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]);
    }
    for (int m = 0; m < 4; m++) {
        const __m512d b0 = _mm512_castps_pd(b[4 * m]), b1 = _mm512_castps_pd(b[4 * m + 1]);
        const __m512d b2 = _mm512_castps_pd(b[4 * m + 2]), b3 = _mm512_castps_pd(b[4 * m + 3]);
        c[4 * m] = _mm512_castpd_ps(_mm512_unpacklo_pd(b0, b2));
        c[4 * m + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(b0, b2));
        c[4 * m + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b1, b3));
        c[4 * m + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b1, b3));
    }
    /* c[4m+q], 128-bit lane l, holds element 4l+q of rows 4m..4m+3: transpose the lanes */
    for (int q = 0; q < 4; q++) {
        const __m512 d0 = _mm512_shuffle_f32x4(c[q], c[4 + q], 0x44);
        const __m512 d1 = _mm512_shuffle_f32x4(c[q], c[4 + q], 0xEE);
        const __m512 d2 = _mm512_shuffle_f32x4(c[8 + q], c[12 + q], 0x44);
        const __m512 d3 = _mm512_shuffle_f32x4(c[8 + q], c[12 + q], 0xEE);
        t[q] = _mm512_shuffle_f32x4(d0, d2, 0x88);
        t[4 + q] = _mm512_shuffle_f32x4(d0, d2, 0xDD);
        t[8 + q] = _mm512_shuffle_f32x4(d1, d3, 0x88);
        t[12 + q] = _mm512_shuffle_f32x4(d1, d3, 0xDD);
    }
}
#endif

void steerlm_relayout(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_cross_entropy_back(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_sum_squares(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_adamw(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_swiglu_back(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_soft_max(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_rms_norm(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_rms_norm_back(struct tensor_abi *dst, int ith, int nth, void *userdata);
/* RMSNorm times a gain and its two gradients, AVX-512 (rmsnorm.c) */
void steerlm_rms_norm_gain(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_rms_norm_gain_back(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_rope_table(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_rope(struct tensor_abi *dst, int ith, int nth, void *userdata);
/* rope.c's rotation of rows of consecutive tokens by the table (sg -1: the inverse) on the path `level` names
   (steerlm_rope_level), for attention.c */
int steerlm_rope_level(int neox, int64_t n);
void steerlm_rope_rows(int level, const float *x, int64_t xs, const float *table, float sg, int neox, int64_t n,
                       float *y, int64_t ys, int64_t rows);
/* causal attention with RoPE and its gradient, AVX-512 (attention.c): neox or adjacent pairs; the scale comes as
   the node's userdata */
void steerlm_attention(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_attention_neox(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_attention_back(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_attention_back_neox(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_f32(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_f32_into(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_bf16(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_f16(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_bf16_f32(struct tensor_abi *dst, int ith, int nth, void *userdata);
void steerlm_gemm_q8_0(struct tensor_abi *dst, int ith, int nth, void *userdata);
/* the GEMMs' packing scratch: bytes held (kept between calls), and freeing what is idle */
size_t steerlm_gemm_scratch_bytes(void);
void steerlm_gemm_scratch_release(void);
/* f32 products run on AMX tiles, their f32 operands split into bf16 parts (gemm.c), since the library loaded */
size_t steerlm_gemm_split_products(void);

#endif
