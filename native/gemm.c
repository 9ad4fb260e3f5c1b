/*
 * GEMMs with f32 accumulation, the product ggml_mul_mat computes: out[M, N] (f32, ne0 = M) from
 * a [K, M] and b [K, N] (rows K-contiguous; both f32, or both bf16 with K even), batched over ne2/ne3
 * with a broadcast over b's. Why not ggml's: its tinyBLAS kernels take dot products along K, which end
 * in a horizontal sum per output; for the short reductions of small models (K = 256) those sums cost
 * as much as the products. Here each instruction multiplies a packed panel of 32 rows of a by one
 * broadcast element of b (bf16: a (k, k+1) pair, VDPBF16PS; f32: one k, FMA) and accumulates 16 outputs
 * per register: no horizontal sums. Both kinds pack 32-bit words (a pair or a float), O(MK + NK).
 * A frozen base stored as f16, bf16 or Q8_0 is widened exactly to f32 chunk by chunk, then packed.
 */
#include <stdio.h>

#include "kernels.h"

#define MR 32 /* rows of a per panel: two registers of 16 f32 outputs */
#define NR 12 /* columns of b per block: 2 x 12 accumulators + 2 a registers + 1 broadcast */
#define MC 128 /* rows of a packed at a time (a chunk stays in L2 while b streams through) */
#define SCRATCH_LIMIT (1 << 24) /* 32-bit words (64 MB) for each of a's chunk and b's packed part */

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
            for (int64_t i = 0; i < 16; i++) {
                const uint32_t *row = (const uint32_t *)(r0 + (size_t)i * lda);
                for (int64_t kp = kv; kp < k2; kp++) dst[kp * MR + g + i] = row[kp];
            }
        }
        /* the rest of a partial panel, and its zero rows */
        for (int64_t j = g; j < MR; j++) {
            if (j >= n) {
                for (int64_t kp = 0; kp < k2; kp++) dst[kp * MR + j] = 0;
                continue;
            }
            const uint32_t *row = (const uint32_t *)(a + (size_t)(m0 + p * MR + j) * lda);
            for (int64_t kp = 0; kp < k2; kp++) dst[kp * MR + j] = row[kp];
        }
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

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void micro_bf16(const uint32_t *ap,
                                                                                  const uint32_t *bp,
                                                                                  int64_t k2, float *out,
                                                                                  size_t ldo, int64_t rows,
                                                                                  int64_t cols) {
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = _mm512_setzero_ps();
        c1[j] = _mm512_setzero_ps();
    }
    for (int64_t kp = 0; kp < k2; kp++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512(ap + kp * MR);
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512(ap + kp * MR + 16);
        const uint32_t *bk = bp + kp * NR;
        for (int j = 0; j < NR; j++) {
            const __m512bh bj = (__m512bh)_mm512_set1_epi32((int)bk[j]);
            c0[j] = _mm512_dpbf16_ps(c0[j], a0, bj);
            c1[j] = _mm512_dpbf16_ps(c1[j], a1, bj);
        }
    }
    const __mmask16 k0 = rows >= 16 ? 0xffff : (__mmask16)((1u << rows) - 1);
    const __mmask16 k1 = rows >= 32 ? 0xffff : rows <= 16 ? 0 : (__mmask16)((1u << (rows - 16)) - 1);
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1, c1[j]);
    }
}

__attribute__((target("avx512f"))) static void micro_f32(const uint32_t *ap, const uint32_t *bp, int64_t k1,
                                                       float *out, size_t ldo, int64_t rows, int64_t cols) {
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = _mm512_setzero_ps();
        c1[j] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < k1; k++) {
        const __m512 a0 = _mm512_loadu_ps((const float *)(ap + k * MR));
        const __m512 a1 = _mm512_loadu_ps((const float *)(ap + k * MR + 16));
        const float *bk = (const float *)(bp + k * NR);
        for (int j = 0; j < NR; j++) {
            const __m512 bj = _mm512_set1_ps(bk[j]);
            c0[j] = _mm512_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, bj, c1[j]);
        }
    }
    const __mmask16 k0 = rows >= 16 ? 0xffff : (__mmask16)((1u << rows) - 1);
    const __mmask16 k1m = rows >= 32 ? 0xffff : rows <= 16 ? 0 : (__mmask16)((1u << (rows - 16)) - 1);
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1m, c1[j]);
    }
}

typedef void (*micro_fn)(const uint32_t *ap, const uint32_t *bp, int64_t kw, float *out, size_t ldo, int64_t rows,
                         int64_t cols);

/* thread-local scratch for the packed panels (grown as needed, kept across calls) */
static _Thread_local uint32_t *scratch;
static _Thread_local size_t scratch_words;

/* Bounded by the SCRATCH_LIMIT blocking below; failing means the process is out of memory: abort with a
   message, as ggml does (the engine reports native deaths of isolated jobs), never a silently wrong product. */
static uint32_t *scratch_get(size_t words) {
    if (words > scratch_words) {
        free(scratch);
        scratch = (uint32_t *)aligned_alloc(64, ((words * 4 + 63) / 64) * 64);
        scratch_words = scratch ? words : 0;
        if (!scratch) {
            fprintf(stderr, "steerlm gemm: cannot allocate %zu MB of scratch\n", words * 4 >> 20);
            abort();
        }
    }
    return scratch;
}

/* kw: 32-bit words per row of a and b (K/2 pairs for bf16, K floats for f32) */
/* Widens rows [m0, m0 + rows) of a (f16, bf16 or Q8_0) to f32, K floats per row, exactly. */
typedef void (*widen_fn)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t K, float *out);

static void gemm(struct tensor_abi *dst, int ith, int nth, int64_t kw, micro_fn micro, widen_fn widen) {
    const struct tensor_abi *a = dst->src[0], *b = dst->src[1];
    const int64_t M = a->ne[1], N = b->ne[1];
    const int64_t B2 = b->ne[2], B3 = b->ne[3];
    const int64_t r2 = B2 / a->ne[2], r3 = B3 / a->ne[3];
    /* a chunk of a: MC rows, fewer for a very long K so that it stays within SCRATCH_LIMIT words */
    int64_t mc = SCRATCH_LIMIT / kw / MR * MR;
    if (mc > MC) mc = MC;
    if (mc < MR) mc = MR;
    const int64_t chunks = (M + mc - 1) / mc;
    /* split N too when there are few (chunk, batch) pairs, so every thread gets a fair share (smol135's
       M = 576 is 4.5 chunks); each part repacks its chunk of a, which costs O(MK) against O(MNK) */
    const int64_t blocks = (N + NR - 1) / NR, pairs = chunks * B2 * B3;
    int64_t parts = (4 * (int64_t)nth + pairs - 1) / pairs;
    if (parts > blocks / 4) parts = blocks / 4;
    if (parts < 1) parts = 1;
    /* ... and enough parts that each one's packed columns stay within SCRATCH_LIMIT words */
    const int64_t per_block = NR * kw, fit = SCRATCH_LIMIT / per_block > 1 ? SCRATCH_LIMIT / per_block : 1;
    if ((blocks + parts - 1) / parts > fit) parts = (blocks + fit - 1) / fit;
    const int64_t jobs = pairs * parts;
    const int64_t per = (jobs + nth - 1) / nth;
    const int64_t ja = per * ith, jb = ja + per < jobs ? ja + per : jobs;
    if (ja >= jb) return;
    /* scratch: one packed chunk of a, then the packed column blocks of this job's part of b */
    const int64_t span = ((blocks + parts - 1) / parts + 1) * NR;
    uint32_t *ap = scratch_get((size_t)(mc * kw + span * kw + (widen ? mc * kw : 0)));
    uint32_t *bp = ap + mc * kw;
    float *wide = widen ? (float *)(bp + span * kw) : 0; /* a's chunk widened to f32 */
    int64_t packed_b = -1; /* the (batch, part) whose columns are in bp: b is packed once, not per chunk */
    /* jobs run chunk-fastest: (i3, i2, part, chunk) */
    for (int64_t j = ja; j < jb; j++) {
        const int64_t chunk = j % chunks, part = (j / chunks) % parts, batch = j / (chunks * parts);
        const int64_t i2 = batch % B2, i3 = batch / B2;
        const int64_t m0 = chunk * mc, rows = M - m0 < mc ? M - m0 : mc;
        const int64_t n_lo = blocks * part / parts * NR, n_hi_raw = blocks * (part + 1) / parts * NR;
        const int64_t n_hi = n_hi_raw < N ? n_hi_raw : N;
        const char *abase = (const char *)a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        const char *bbase = (const char *)b->data + i2 * b->nb[2] + i3 * b->nb[3];
        float *obase = (float *)((char *)dst->data + i2 * dst->nb[2] + i3 * dst->nb[3]);
        const size_t ldo = dst->nb[1] / 4;
        if (packed_b != batch * parts + part) {
            for (int64_t n0 = n_lo; n0 < n_hi; n0 += NR)
                pack_b(bbase, b->nb[1], n0, N - n0 < NR ? N - n0 : NR, kw, bp + (n0 - n_lo) * kw);
            packed_b = batch * parts + part;
        }
        if (widen) {
            widen(abase, a->nb[1], m0, rows, kw, wide);
            pack_a((const char *)wide, (size_t)kw * 4, 0, rows, kw, ap);
        } else
            pack_a(abase, a->nb[1], m0, rows, kw, ap);
        for (int64_t n0 = n_lo; n0 < n_hi; n0 += NR) {
            const int64_t cols = N - n0 < NR ? N - n0 : NR;
            for (int64_t p = 0; p * MR < rows; p++)
                micro(ap + (size_t)p * (size_t)kw * MR, bp + (n0 - n_lo) * kw, kw,
                      obase + (size_t)n0 * ldo + (size_t)(m0 + p * MR), ldo, rows - p * MR, cols);
        }
    }
}

void steerlm_gemm_bf16(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, dst->src[0]->ne[0] / 2, micro_bf16, 0);
}

void steerlm_gemm_f32(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, dst->src[0]->ne[0], micro_f32, 0);
}

__attribute__((target("avx512f,f16c"))) static void widen_f16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                       int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda);
        float *d = out + r * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) _mm512_storeu_ps(d + k, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k))));
        for (; k < K; k++) d[k] = _cvtsh_ss(src[k]);
    }
}

__attribute__((target("avx512f"))) static void widen_bf16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda);
        uint32_t *d = (uint32_t *)(out + r * K);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm512_storeu_si512(d + k, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + k))), 16));
        for (; k < K; k++) d[k] = (uint32_t)src[k] << 16;
    }
}

/* Q8_0: blocks of 32 values, an f16 scale then 32 int8 (34 bytes); value = scale * q, as ggml dequantises */
__attribute__((target("avx512f,f16c"))) static void widen_q8_0(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const char *src = a + (size_t)(m0 + r) * lda;
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

/* a f16, bf16 or Q8_0 (a frozen LoRA base), b f32: a is widened exactly to f32 chunk by chunk, then the f32 GEMM */
void steerlm_gemm_f16(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, dst->src[0]->ne[0], micro_f32, widen_f16);
}

void steerlm_gemm_bf16_f32(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, dst->src[0]->ne[0], micro_f32, widen_bf16);
}

void steerlm_gemm_q8_0(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, dst->src[0]->ne[0], micro_f32, widen_q8_0);
}
#endif
