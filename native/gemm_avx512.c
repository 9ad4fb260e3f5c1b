/*
 * The GEMM's AVX-512 routines (gemm.h): each instruction multiplies a packed panel of 32 rows of a (two
 * registers) by one broadcast element of b (f32: one k, FMA; bf16: a (k, k+1) pair, VDPBF16PS), 24
 * accumulators for a block of 12 columns. Packing transposes 16x16 blocks in registers.
 */
#include "gemm.h"

#ifdef HAVE_X86

/* pack rows [m0, m0 + rows) of a into panels: ap[(p * k2 + kp) * MR + j] = word kp of row m = m0 + p*MR + j */
__attribute__((target("avx512f"))) static void pack_a(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                    int64_t k2, uint32_t *ap) {
    for (int64_t p = 0; p * MR < rows; p++) {
        uint32_t *dst = ap + (size_t)p * (size_t)k2 * MR;
        const int64_t n = rows - p * MR < MR ? rows - p * MR : MR;
        /* full groups of 16 rows: 16x16 register transposes, one 64-byte store per word index */
        int64_t g = 0;
        const int64_t kv = k2 & ~(int64_t)15;
        for (; g + 16 <= n; g += 16) {
            const char *r0 = a + (size_t)(m0 + p * MR + g) * lda;
            for (int64_t kp = 0; kp < kv; kp += 16) {
                __m512 in[16], t[16];
                for (int i = 0; i < 16; i++) in[i] = _mm512_loadu_ps((const float *)(r0 + (size_t)i * lda) + kp);
                transpose16(in, t);
                for (int j = 0; j < 16; j++) _mm512_storeu_ps((float *)(dst + (kp + j) * MR + g), t[j]);
            }
            pack_a_scalar(a + (size_t)(m0 + p * MR) * lda, lda, g, g + 16, n, kv, k2, dst);
        }
        /* the rest of a partial panel, and its zero rows */
        pack_a_scalar(a + (size_t)(m0 + p * MR) * lda, lda, g, MR, n, 0, k2, dst);
    }
}

/* pack columns [n0, n0 + cols) of b: bp[kp * NR + j] = word kp of row n = n0 + j (0 for j >= cols).
   16 words of each row at a time: a 16x16 register transpose (rows NR.. zero), NR lanes stored per word index */
__attribute__((target("avx512f"))) static void pack_b(const char *b, size_t ldb, int64_t n0, int64_t cols,
                                                    int64_t k2, uint32_t *bp) {
    const int64_t kv = k2 & ~(int64_t)15;
    for (int64_t kp = 0; kp < kv; kp += 16) {
        __m512 in[16], t[16];
        for (int i = 0; i < 16; i++)
            in[i] = i < cols ? _mm512_loadu_ps((const float *)(b + (size_t)(n0 + i) * ldb) + kp) : _mm512_setzero_ps();
        transpose16(in, t);
        for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(bp + (kp + j) * NR, (1u << NR) - 1, t[j]);
    }
    for (int64_t j = 0; j < NR; j++) {
        if (j >= cols) {
            for (int64_t kp = kv; kp < k2; kp++) bp[kp * NR + j] = 0;
            continue;
        }
        const uint32_t *row = (const uint32_t *)(b + (size_t)(n0 + j) * ldb);
        for (int64_t kp = kv; kp < k2; kp++) bp[kp * NR + j] = row[kp];
    }
}

/* pack columns [n0, n0 + cols) of a transposed b (N contiguous: element (n, k) at b + k*ldk + n*4), words
   [k0, k0 + kc): word kp of the block is a run of `cols` floats of row k0 + kp (0 past cols), so nothing is
   transposed (the backward's dW = xᵀ·dy and attention's products with Pᵀ read their b so) */
__attribute__((target("avx512f"))) static void pack_bt(const char *b, size_t ldk, int64_t n0, int64_t cols, int64_t k0,
                                                     int64_t kc, uint32_t *bp) {
    const __mmask16 live = tail_mask(cols); /* cols <= NR */
    const char *row = b + (size_t)k0 * ldk + (size_t)n0 * 4;
    for (int64_t kp = 0; kp < kc; kp++)
        _mm512_mask_storeu_ps(bp + kp * NR, (1u << NR) - 1, _mm512_maskz_loadu_ps(live, (const float *)(row + (size_t)kp * ldk)));
}


/* word k of a transposed a's 32 rows from `col` (the panel's first row's element in W's row 0), as two registers:
   one contiguous run of W's row (two rows for bf16 pairs), rows past `live` zero */
__attribute__((target("avx512f,avx512bw,f16c"))) static inline void at_word(const char *col, size_t ldk, int64_t k,
                                                                          enum at_kind kind, __mmask32 live,
                                                                          __m512i *w0, __m512i *w1) {
    const __mmask16 k0m = (__mmask16)live, k1m = (__mmask16)(live >> 16);
    if (kind == AT_F32) {
        const float *r = (const float *)(col + (size_t)k * ldk);
        *w0 = _mm512_castps_si512(_mm512_maskz_loadu_ps(k0m, r));
        *w1 = _mm512_castps_si512(_mm512_maskz_loadu_ps(k1m, r + 16));
    } else if (kind == AT_BF16_PAIRS) {
        /* word = (a[m][2k], a[m][2k+1]): the low half from row 2k of W, the high half from 2k+1 */
        const __m512i lo = _mm512_maskz_loadu_epi16(live, col + (size_t)(2 * k) * ldk);
        const __m512i hi = _mm512_maskz_loadu_epi16(live, col + (size_t)(2 * k + 1) * ldk);
        *w0 = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(lo)),
                              _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
        *w1 = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(lo, 1)),
                              _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
    } else {
        const __m512i v = _mm512_maskz_loadu_epi16(live, col + (size_t)k * ldk);
        const __m256i h0 = _mm512_castsi512_si256(v), h1 = _mm512_extracti64x4_epi64(v, 1);
        if (kind == AT_BF16) {
            *w0 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h0), 16);
            *w1 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16);
        } else {
            *w0 = _mm512_castps_si512(_mm512_cvtph_ps(h0));
            *w1 = _mm512_castps_si512(_mm512_cvtph_ps(h1));
        }
    }
}

/* pack rows [m0, m0 + rows) of a transposed a, words [k0, k0 + kc): element (m, k) lies at a + k*ldk + m*size.
   Word kp of panel rows m..m+31 comes from one contiguous run of W's row (two rows for bf16 pairs). Word by word
   across all of the chunk's panels, so that each row of W is read as one run of rows * size bytes, its lines
   fetched AT_AHEAD words ahead. */
__attribute__((target("avx512f,avx512bw,f16c"))) static void pack_at(const char *a, size_t ldk, int64_t m0,
                                                                 int64_t rows, int64_t k0, int64_t kc,
                                                                 enum at_kind kind, uint32_t *ap) {
    const size_t size = kind == AT_F32 ? 4 : 2;
    const int64_t panels = (rows + MR - 1) / MR, span = rows * (int64_t)size; /* bytes of a row of W read */
    const int per_word = kind == AT_BF16_PAIRS ? 2 : 1;                        /* rows of W a word reads */
    const char *first = a + (size_t)m0 * size;
    for (int64_t kp = 0; kp < kc; kp++) {
        if (kp + AT_AHEAD < kc)
            for (int r = 0; r < per_word; r++) {
                const char *ahead = first + (size_t)(per_word * (k0 + kp + AT_AHEAD) + r) * ldk;
                for (int64_t o = 0; o < span; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T1);
            }
        for (int64_t p = 0; p < panels; p++) {
            const int64_t n = rows - p * MR < MR ? rows - p * MR : MR;
            const __mmask32 live = n >= 32 ? 0xffffffffu : (__mmask32)((1u << n) - 1); /* zero rows past M */
            __m512i w0, w1;
            at_word(first + (size_t)(p * MR) * size, ldk, k0 + kp, kind, live, &w0, &w1);
            uint32_t *dst = ap + (size_t)p * (size_t)kc * MR + kp * MR;
            _mm512_storeu_si512(dst, w0);
            _mm512_storeu_si512(dst + 16, w1);
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void micro_bf16(const uint32_t *ap,
                                                                                  const uint32_t *bp,
                                                                                  int64_t bs, int64_t k2,
                                                                                  float *out, size_t ldo,
                                                                                  int64_t rows, int64_t cols,
                                                                                  int acc) {
    const __mmask16 k0 = tail_mask(rows), k1 = tail_mask(rows - 16);
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k0, out + (size_t)j * ldo) : _mm512_setzero_ps();
        c1[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k1, out + (size_t)j * ldo + 16) : _mm512_setzero_ps();
    }
    for (int64_t kp = 0; kp < k2; kp++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512(ap + kp * MR);
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512(ap + kp * MR + 16);
        const uint32_t *bk = bp + kp * bs;
        for (int j = 0; j < NR; j++) {
            const __m512bh bj = (__m512bh)_mm512_set1_epi32((int)bk[j]);
            c0[j] = _mm512_dpbf16_ps(c0[j], a0, bj);
            c1[j] = _mm512_dpbf16_ps(c1[j], a1, bj);
        }
    }
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1, c1[j]);
    }
}

__attribute__((target("avx512f"))) static void micro_f32(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t k1,
                                                       float *out, size_t ldo, int64_t rows, int64_t cols, int acc) {
    const __mmask16 k0 = tail_mask(rows), k1m = tail_mask(rows - 16);
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k0, out + (size_t)j * ldo) : _mm512_setzero_ps();
        c1[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k1m, out + (size_t)j * ldo + 16) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < k1; k++) {
        const __m512 a0 = _mm512_loadu_ps((const float *)(ap + k * MR));
        const __m512 a1 = _mm512_loadu_ps((const float *)(ap + k * MR + 16));
        const float *bk = (const float *)(bp + k * bs);
        for (int j = 0; j < NR; j++) {
            const __m512 bj = _mm512_set1_ps(bk[j]);
            c0[j] = _mm512_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, bj, c1[j]);
        }
    }
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1m, c1[j]);
    }
}

__attribute__((target("avx512f,f16c"))) static void widen_f16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                       int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        float *d = out + r * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) _mm512_storeu_ps(d + k, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k))));
        for (; k < K; k++) d[k] = _cvtsh_ss(src[k]);
    }
}

__attribute__((target("avx512f"))) static void widen_bf16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        uint32_t *d = (uint32_t *)(out + r * K);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm512_storeu_si512(d + k, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + k))), 16));
        for (; k < K; k++) d[k] = (uint32_t)src[k] << 16;
    }
}

/* Q8_0: blocks of 32 values, an f16 scale then 32 int8 (34 bytes); value = scale * q, as ggml dequantises */
__attribute__((target("avx512f,f16c"))) static void widen_q8_0(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const char *src = a + (size_t)(m0 + r) * lda + k0 / 32 * 34; /* k0 a multiple of 32: of KC, or a panel's first row (pack_at_q8_0) */
        float *d = out + r * K;
        for (int64_t blk = 0; blk < K / 32; blk++) {
            const char *q = src + blk * 34;
            uint16_t h;
            memcpy(&h, q, 2);
            const __m512 scale = _mm512_set1_ps(_cvtsh_ss(h));
            for (int half = 0; half < 2; half++) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(q + 2 + 16 * half));
                _mm512_storeu_ps(d + blk * 32 + 16 * half, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))));
            }
        }
    }
}


const struct gemm_isa gemm_avx512 = {pack_a, pack_b, pack_bt, pack_at, micro_f32, micro_bf16, widen_f16, widen_bf16, widen_q8_0,
                                     1024};
#endif
