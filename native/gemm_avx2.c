/*
 * The GEMM's AVX2 routines (gemm.h), for CPUs without AVX-512 (Zen 2 and 3, Intel's client cores): the same
 * packed layouts as gemm_avx512.c, so the driver is shared. With 16 registers of 8 floats, a 32 x 12 tile
 * runs as four 16 x 6 tiles, each 12 accumulators + 2 registers of a + 1 broadcast of b, so that every
 * load of a feeds six FMAs. Packing transposes 8x8 blocks in registers. No bf16 product (no VDPBF16PS).
 */
#include "gemm.h"

#ifdef HAVE_X86
TARGET_AVX2 static void pack_a(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k2, uint32_t *ap) {
    const int64_t kv = k2 & ~(int64_t)7;
    for (int64_t p = 0; p * MR < rows; p++) {
        uint32_t *dst = ap + (size_t)p * (size_t)k2 * MR;
        const int64_t n = rows - p * MR < MR ? rows - p * MR : MR;
        int64_t g = 0;
        for (; g + 8 <= n; g += 8) {
            const char *r0 = a + (size_t)(m0 + p * MR + g) * lda;
            for (int64_t kp = 0; kp < kv; kp += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps((const float *)(r0 + (size_t)i * lda) + kp);
                transpose8(r);
                for (int j = 0; j < 8; j++) _mm256_storeu_ps((float *)(dst + (kp + j) * MR + g), r[j]);
            }
            pack_a_scalar(a + (size_t)(m0 + p * MR) * lda, lda, g, g + 8, n, kv, k2, dst);
        }
        pack_a_scalar(a + (size_t)(m0 + p * MR) * lda, lda, g, MR, n, 0, k2, dst);
    }
}

/* 8 words of each row at a time: columns 0-7 as an 8x8 register transpose; columns 8-11 as a 4x8 one, whose
   vector q holds words q and q + 4 of the four rows in its two halves */
TARGET_AVX2 static void pack_b(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2, uint32_t *bp) {
    const int64_t kv = k2 & ~(int64_t)7;
    for (int64_t kp = 0; kp < kv; kp += 8) {
        __m256 lo[8], hi[4];
        for (int i = 0; i < 8; i++)
            lo[i] = i < cols ? _mm256_loadu_ps((const float *)(b + (size_t)(n0 + i) * ldb) + kp) : _mm256_setzero_ps();
        for (int i = 0; i < 4; i++)
            hi[i] = 8 + i < cols ? _mm256_loadu_ps((const float *)(b + (size_t)(n0 + 8 + i) * ldb) + kp) : _mm256_setzero_ps();
        transpose8(lo);
        const __m256 t0 = _mm256_unpacklo_ps(hi[0], hi[1]), t1 = _mm256_unpackhi_ps(hi[0], hi[1]);
        const __m256 t2 = _mm256_unpacklo_ps(hi[2], hi[3]), t3 = _mm256_unpackhi_ps(hi[2], hi[3]);
        const __m256 q[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                             _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
        for (int j = 0; j < 8; j++) {
            _mm256_storeu_ps((float *)(bp + (kp + j) * NR), lo[j]);
            const __m256 w = q[j & 3];
            _mm_storeu_ps((float *)(bp + (kp + j) * NR + 8), j < 4 ? _mm256_castps256_ps128(w) : _mm256_extractf128_ps(w, 1));
        }
    }
    for (int64_t j = 0; j < NR; j++) {
        const uint32_t *row = j < cols ? (const uint32_t *)(b + (size_t)(n0 + j) * ldb) : 0;
        for (int64_t kp = kv; kp < k2; kp++) bp[kp * NR + j] = row ? row[kp] : 0;
    }
}

TARGET_AVX2 static void pack_bt(const char *b, size_t ldk, int64_t n0, int64_t cols, int64_t k0, int64_t kc, uint32_t *bp) {
    const __m256i m0 = lanes8(cols), m1 = lanes8(cols - 8);
    const __m128i m1h = _mm256_castsi256_si128(m1);
    const char *row = b + (size_t)k0 * ldk + (size_t)n0 * 4;
    if (cols == NR) {
        for (int64_t kp = 0; kp < kc; kp++) {
            const float *r = (const float *)(row + (size_t)kp * ldk);
            _mm256_storeu_ps((float *)(bp + kp * NR), _mm256_loadu_ps(r));
            _mm_storeu_ps((float *)(bp + kp * NR + 8), _mm_loadu_ps(r + 8));
        }
        return;
    }
    for (int64_t kp = 0; kp < kc; kp++) {
        const float *r = (const float *)(row + (size_t)kp * ldk);
        _mm256_storeu_ps((float *)(bp + kp * NR), _mm256_maskload_ps(r, m0));
        _mm_storeu_ps((float *)(bp + kp * NR + 8), _mm_maskload_ps(r + 8, m1h));
    }
}

/* 8 rows' words of one k at a time from a contiguous run of W's row; a partial group of 8 word by word.
   AT_BF16_PAIRS feeds the bf16 product only, which this variant does not have. Word by word across all of the
   chunk's panels, W's rows fetched into L2 AT_AHEAD words ahead (gemm.h), as gemm_avx512.c's pack_at does. */
TARGET_AVX2 static void pack_at(const char *a, size_t ldk, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
                       enum at_kind kind, uint32_t *ap) {
    const size_t size = kind == AT_F32 ? 4 : 2;
    const int64_t span = rows * (int64_t)size; /* bytes of a row of W read */
    const char *first = a + (size_t)m0 * size;
    for (int64_t kp = 0; kp < kc; kp++) {
        const char *r0 = first + (size_t)(k0 + kp) * ldk;
        if (kp + AT_AHEAD < kc)
            for (int64_t o = 0; o < span; o += 64) _mm_prefetch(r0 + (size_t)AT_AHEAD * ldk + o, _MM_HINT_T1);
        for (int64_t p = 0; p * MR < rows; p++) {
            const int64_t n = rows - p * MR < MR ? rows - p * MR : MR;
            const char *r = r0 + (size_t)(p * MR) * size;
            uint32_t *d = ap + (size_t)p * (size_t)kc * MR + kp * MR;
            int64_t j = 0;
            for (; j + 8 <= n; j += 8) {
                __m256 w;
                if (kind == AT_F32) w = _mm256_loadu_ps((const float *)r + j);
                else {
                    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)r + j));
                    w = kind == AT_F16 ? _mm256_cvtph_ps(h)
                                       : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
                }
                _mm256_storeu_ps((float *)(d + j), w);
            }
            for (; j < n; j++) {
                const uint16_t h = size == 2 ? ((const uint16_t *)r)[j] : 0;
                if (kind == AT_F32) d[j] = ((const uint32_t *)r)[j];
                else if (kind == AT_BF16) d[j] = (uint32_t)h << 16;
                else {
                    const float f = _cvtsh_ss(h);
                    memcpy(d + j, &f, 4);
                }
            }
            for (; j < MR; j++) d[j] = 0;
        }
    }
}

/* one 16 x 6 tile: rows [0, 16) of the panel at ap, columns [0, 6) of the block at bp. Accumulators as named
   variables: GCC kept an array of them on the stack, a store and a reload per FMA. */
#define FMA2(j)                                              \
    do {                                                     \
        const __m256 bj = _mm256_broadcast_ss(bk + j);       \
        c0##j = _mm256_fmadd_ps(a0, bj, c0##j);              \
        c1##j = _mm256_fmadd_ps(a1, bj, c1##j);              \
    } while (0)
#define STORE2(j)                                                                                             \
    do {                                                                                                      \
        if (j >= cols) break;                                                                                 \
        float *o = out + (size_t)j * ldo;                                                                     \
        if (rows >= 16) { /* plain stores: AMD's masked ones are slow microcode */                            \
            _mm256_storeu_ps(o, acc ? _mm256_add_ps(_mm256_loadu_ps(o), c0##j) : c0##j);                      \
            _mm256_storeu_ps(o + 8, acc ? _mm256_add_ps(_mm256_loadu_ps(o + 8), c1##j) : c1##j);              \
        } else {                                                                                              \
            _mm256_maskstore_ps(o, k0, acc ? _mm256_add_ps(_mm256_maskload_ps(o, k0), c0##j) : c0##j);       \
            _mm256_maskstore_ps(o + 8, k1, acc ? _mm256_add_ps(_mm256_maskload_ps(o + 8, k1), c1##j) : c1##j); \
        }                                                                                                     \
    } while (0)
TARGET_AVX2 static inline void tile16x6(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                               int64_t rows, int64_t cols, int acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00;
    for (int64_t k = 0; k < kw; k++) {
        const __m256 a0 = _mm256_loadu_ps((const float *)(ap + k * MR));
        const __m256 a1 = _mm256_loadu_ps((const float *)(ap + k * MR + 8));
        const float *bk = (const float *)(bp + k * bs);
        FMA2(0);
        FMA2(1);
        FMA2(2);
        FMA2(3);
        FMA2(4);
        FMA2(5);
    }
    const __m256i k0 = lanes8(rows), k1 = lanes8(rows - 8);
    STORE2(0);
    STORE2(1);
    STORE2(2);
    STORE2(3);
    STORE2(4);
    STORE2(5);
}
#undef FMA2
#undef STORE2

TARGET_AVX2 static void micro_f32(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                         int64_t rows, int64_t cols, int acc) {
    for (int64_t r0 = 0; r0 < MR && r0 < rows; r0 += 16)
        for (int64_t j0 = 0; j0 < NR && j0 < cols; j0 += 6)
            tile16x6(ap + r0, bp + j0, bs, kw, out + (size_t)j0 * ldo + r0, ldo, rows - r0, cols - j0, acc);
}

TARGET_AVX2 static void widen_f16(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        float *d = out + r * K;
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) _mm256_storeu_ps(d + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
        for (; k < K; k++) d[k] = _cvtsh_ss(src[k]);
    }
}

TARGET_AVX2 static void widen_bf16(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        uint32_t *d = (uint32_t *)(out + r * K);
        int64_t k = 0;
        for (; k + 8 <= K; k += 8)
            _mm256_storeu_si256((__m256i *)(d + k),
                                _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + k))), 16));
        for (; k < K; k++) d[k] = (uint32_t)src[k] << 16;
    }
}

/* Q8_0: blocks of 32 values, an f16 scale then 32 int8 (34 bytes); value = scale * q, as ggml dequantises */
TARGET_AVX2 static void widen_q8_0(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const char *src = a + (size_t)(m0 + r) * lda + k0 / 32 * 34; /* k0 a multiple of 32: of KC, or a panel's first row (pack_at_q8_0) */
        float *d = out + r * K;
        for (int64_t blk = 0; blk < K / 32; blk++) {
            const char *q = src + blk * 34;
            uint16_t h;
            memcpy(&h, q, 2);
            const __m256 scale = _mm256_set1_ps(_cvtsh_ss(h));
            for (int e = 0; e < 4; e++) {
                const __m128i v = _mm_loadl_epi64((const __m128i *)(q + 2 + 8 * e));
                _mm256_storeu_ps(d + blk * 32 + 8 * e, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
            }
        }
    }
}

/* kc 384: a block of b's columns (12 x 384 floats, 18 KB) stays in Zen 3's 32 KB L1 and a chunk of a (128 x 384,
   192 KB) in its 512 KB L2; in one block of K = 960 (SmolLM2-360M) neither did: 65 -> 90 GFLOP/s */
const struct gemm_isa gemm_avx2 = {pack_a, pack_b, pack_bt, pack_at, micro_f32, 0, widen_f16, widen_bf16, widen_q8_0, 384};
#endif
