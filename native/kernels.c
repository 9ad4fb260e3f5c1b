/*
 * steerlm's own CPU kernels, run inside ggml graphs as custom ops (ggml_custom_4d). They exist because
 * ggml has no fused "strided f32 -> contiguous f32/bf16, zero-padded" copy: the training backward needs
 * many transposes (every weight gradient is a GEMM over tokens), and ggml makes them with per-element
 * memcpy or several passes (transpose, pad, cast). Built at install time by scripts/build-native.mjs; when
 * it is absent the engine uses the plain ggml ops instead (same values, bit for bit).
 *
 * The tensor layout below mirrors struct ggml_tensor of the ggml release node-llama-cpp@3.21.1 ships
 * (pinned); src/ggml/kernels.ts checks the offsets against the live library before any kernel runs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
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

/* Offsets of the fields the kernels read, for the loader's ABI check. */
void steerlm_kernels_abi(int64_t out[5]) {
    out[0] = (int64_t)offsetof(struct tensor_abi, ne);
    out[1] = (int64_t)offsetof(struct tensor_abi, nb);
    out[2] = (int64_t)offsetof(struct tensor_abi, src);
    out[3] = (int64_t)offsetof(struct tensor_abi, data);
    out[4] = 1; /* kernel set version */
}

/* Round to nearest even, NaN kept quiet: the same bits as ggml's fp32 -> bf16. */
static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

#define TILE 32

#ifdef HAVE_X86
/*
 * 16x16 f32 block: a[i] = 16 consecutive floats of source column c0+i (contiguous along the destination
 * row index); writes destination rows r0..r0+15, 16 values each, as f32 or bf16. A register transpose in
 * four shuffle stages (pairs, quads, 128-bit lanes twice), then one store per row.
 */
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

/*
 * 16x16 f32 block: a[i] = 16 consecutive floats of source column c0+i (contiguous along the destination
 * row index); writes destination rows r0..r0+15, 16 values each, as f32 or bf16.
 */
__attribute__((target("avx512f,avx512bw"))) static void block16(const char *s, size_t s0, char *d, size_t drow,
                                                              int bf16) {
    __m512 a[16], t[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_loadu_ps((const float *)(s + (size_t)i * s0));
    transpose16(a, t);
    for (int r = 0; r < 16; r++) {
        char *row = d + (size_t)r * drow;
        if (!bf16) {
            _mm512_storeu_ps((float *)row, t[r]);
            continue;
        }
        /* round to nearest even; NaN -> quiet NaN with the same sign and top bits (as ggml) */
        const __m512i u = _mm512_castps_si512(t[r]);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i v = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                      _mm512_set1_epi32(0x7f800000));
        v = _mm512_mask_or_epi32(v, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
        _mm256_storeu_si256((__m256i *)row, _mm512_cvtepi32_epi16(v));
    }
}

static int have_avx512 = -1;
#endif


/*
 * dst[i0, i1, i2, i3] = src[i0, i1, i2, i3] for i0 < src.ne0, 0 for the padding i0 >= src.ne0.
 * src: f32, any strides (typically a transposed view); dst: contiguous f32 or bf16 with
 * dst.ne0 >= src.ne0 and the other dimensions equal. Work is split over (row tile, i2, i3).
 */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void relayout_rows(const struct tensor_abi *src, struct tensor_abi *dst, int64_t i1a, int64_t i1b,
                          int64_t i2, int64_t i3) {
    const int64_t n0 = src->ne[0], d0 = dst->ne[0];
    const size_t s0 = src->nb[0], s1 = src->nb[1];
    const char *sbase = (const char *)src->data + i2 * src->nb[2] + i3 * src->nb[3];
    const int bf16 = dst->type == TYPE_BF16;
    const size_t esize = bf16 ? 2 : 4;
    char *dbase = (char *)dst->data + (size_t)((i3 * dst->ne[2] + i2) * dst->ne[1]) * (size_t)d0 * esize;
    if (s0 == sizeof(float)) {
        /* rows already contiguous: convert row by row */
        for (int64_t i1 = i1a; i1 < i1b; i1++) {
            const float *s = (const float *)(sbase + i1 * s1);
            if (bf16) {
                uint16_t *d = (uint16_t *)(dbase + (size_t)i1 * (size_t)d0 * 2);
                for (int64_t i0 = 0; i0 < n0; i0++) d[i0] = to_bf16(s[i0]);
                for (int64_t i0 = n0; i0 < d0; i0++) d[i0] = 0;
            } else {
                float *d = (float *)(dbase + (size_t)i1 * (size_t)d0 * 4);
                memcpy(d, s, (size_t)n0 * 4);
                for (int64_t i0 = n0; i0 < d0; i0++) d[i0] = 0;
            }
        }
        return;
    }
#ifdef HAVE_X86
    if (s1 == sizeof(float) && have_avx512 == 1) {
        /* source contiguous along the destination rows: 16x16 register transposes, scalar edges */
        const int64_t n0v = n0 & ~(int64_t)15, rv = i1a + ((i1b - i1a) & ~(int64_t)15);
        for (int64_t r0 = i1a; r0 < rv; r0 += 16)
            for (int64_t c0 = 0; c0 < n0v; c0 += 16)
                block16(sbase + (size_t)c0 * s0 + (size_t)r0 * 4, s0, dbase + ((size_t)r0 * (size_t)d0 + (size_t)c0) * esize,
                        (size_t)d0 * esize, bf16);
        for (int64_t r = i1a; r < i1b; r++) {
            const int64_t from = r < rv ? n0v : 0;
            for (int64_t c = from; c < n0; c++) {
                const float v = *(const float *)(sbase + (size_t)c * s0 + (size_t)r * 4);
                if (bf16) ((uint16_t *)dbase)[(size_t)r * (size_t)d0 + (size_t)c] = to_bf16(v);
                else ((float *)dbase)[(size_t)r * (size_t)d0 + (size_t)c] = v;
            }
            memset(dbase + ((size_t)r * (size_t)d0 + (size_t)n0) * esize, 0, (size_t)(d0 - n0) * esize);
        }
        return;
    }
#endif
    /* strided rows: TILE x TILE blocks so that both the reads and the writes stay in cache */
    float buf[TILE][TILE];
    for (int64_t c0 = 0; c0 < n0; c0 += TILE) {
        const int64_t cn = n0 - c0 < TILE ? n0 - c0 : TILE;
        for (int64_t r0 = i1a; r0 < i1b; r0 += TILE) {
            const int64_t rn = i1b - r0 < TILE ? i1b - r0 : TILE;
            /* gather: walk the source along its contiguous axis where it has one */
            for (int64_t c = 0; c < cn; c++) {
                const char *s = sbase + (size_t)(c0 + c) * s0 + (size_t)r0 * s1;
                for (int64_t r = 0; r < rn; r++) buf[r][c] = *(const float *)(s + (size_t)r * s1);
            }
            for (int64_t r = 0; r < rn; r++) {
                if (bf16) {
                    uint16_t *d = (uint16_t *)(dbase + ((size_t)(r0 + r) * (size_t)d0 + (size_t)c0) * 2);
                    for (int64_t c = 0; c < cn; c++) d[c] = to_bf16(buf[r][c]);
                } else {
                    float *d = (float *)(dbase + ((size_t)(r0 + r) * (size_t)d0 + (size_t)c0) * 4);
                    memcpy(d, buf[r], (size_t)cn * 4);
                }
            }
        }
    }
    for (int64_t r = i1a; r < i1b; r++) {
        char *d = dbase + ((size_t)r * (size_t)d0 + (size_t)n0) * esize;
        memset(d, 0, (size_t)(d0 - n0) * esize);
    }
}

void steerlm_relayout(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
#ifdef HAVE_X86
    if (have_avx512 < 0) have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
    const struct tensor_abi *src = dst->src[0];
    const int64_t n1 = src->ne[1], n2 = src->ne[2], n3 = src->ne[3];
    const int64_t tiles = (n1 + TILE - 1) / TILE;
    const int64_t jobs = tiles * n2 * n3;
    /* contiguous chunks of jobs per thread: neighbouring tiles share source cache lines */
    const int64_t per = (jobs + nth - 1) / nth;
    const int64_t ja = per * ith, jb = ja + per < jobs ? ja + per : jobs;
    for (int64_t j = ja; j < jb; j++) {
        const int64_t t = j % tiles, i2 = (j / tiles) % n2, i3 = j / (tiles * n2);
        const int64_t a = t * TILE, b = a + TILE < n1 ? a + TILE : n1;
        relayout_rows(src, dst, a, b, i2, i3);
    }
}

/*
 * GEMMs with f32 accumulation, the product ggml_mul_mat computes: out[M, N] (f32, ne0 = M) from
 * a [K, M] and b [K, N] (rows K-contiguous; both f32, or both bf16 with K even), batched over ne2/ne3
 * with a broadcast over b's. Why not ggml's: its tinyBLAS kernels take dot products along K, which end
 * in a horizontal sum per output; for the short reductions of small models (K = 256) those sums cost
 * as much as the products. Here each instruction multiplies a packed panel of 32 rows of a by one
 * broadcast element of b (bf16: a (k, k+1) pair, VDPBF16PS; f32: one k, FMA) and accumulates 16 outputs
 * per register: no horizontal sums. Both kinds pack 32-bit words (a pair or a float), O(MK + NK).
 */
#define MR 32 /* rows of a per panel: two registers of 16 f32 outputs */
#define NR 12 /* columns of b per block: 2 x 12 accumulators + 2 a registers + 1 broadcast */
#define MC 128 /* rows of a packed at a time (a chunk stays in L2 while b streams through) */

#ifdef HAVE_X86
static int have_bf16 = -1;

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

/* pack columns [n0, n0 + cols) of b: bp[kp * NR + j] = word kp of row n = n0 + j */
static void pack_b(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2, uint32_t *bp) {
    for (int64_t j = 0; j < NR; j++) {
        if (j >= cols) {
            for (int64_t kp = 0; kp < k2; kp++) bp[kp * NR + j] = 0;
            continue;
        }
        const uint32_t *row = (const uint32_t *)(b + (size_t)(n0 + j) * ldb);
        for (int64_t kp = 0; kp < k2; kp++) bp[kp * NR + j] = row[kp];
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

static uint32_t *scratch_get(size_t words) {
    if (words > scratch_words) {
        free(scratch);
        scratch = (uint32_t *)aligned_alloc(64, ((words * 4 + 63) / 64) * 64);
        scratch_words = scratch ? words : 0;
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
    const int64_t chunks = (M + MC - 1) / MC;
    /* split N too when there are few (chunk, batch) pairs, so every thread gets a fair share (smol135's
       M = 576 is 4.5 chunks); each part repacks its chunk of a, which costs O(MK) against O(MNK) */
    const int64_t blocks = (N + NR - 1) / NR, pairs = chunks * B2 * B3;
    int64_t parts = (4 * (int64_t)nth + pairs - 1) / pairs;
    if (parts > blocks / 4) parts = blocks / 4;
    if (parts < 1) parts = 1;
    const int64_t jobs = pairs * parts;
    const int64_t per = (jobs + nth - 1) / nth;
    const int64_t ja = per * ith, jb = ja + per < jobs ? ja + per : jobs;
    if (ja >= jb) return;
    /* scratch: one packed chunk of a, then the packed column blocks of this job's part of b */
    const int64_t span = ((blocks + parts - 1) / parts + 1) * NR;
    uint32_t *ap = scratch_get((size_t)(MC * kw + span * kw + (widen ? MC * kw : 0)));
    if (!ap) return; /* out of memory: cannot happen for the sizes the loader allows */
    uint32_t *bp = ap + MC * kw;
    float *wide = widen ? (float *)(bp + span * kw) : 0; /* a's chunk widened to f32 */
    int64_t packed_b = -1; /* the (batch, part) whose columns are in bp: b is packed once, not per chunk */
    /* jobs run chunk-fastest: (i3, i2, part, chunk) */
    for (int64_t j = ja; j < jb; j++) {
        const int64_t chunk = j % chunks, part = (j / chunks) % parts, batch = j / (chunks * parts);
        const int64_t i2 = batch % B2, i3 = batch / B2;
        const int64_t m0 = chunk * MC, rows = M - m0 < MC ? M - m0 : MC;
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

typedef void (*custom_op)(struct tensor_abi *dst, int ith, int nth, void *userdata);

/* Function pointers for ggml_custom_4d, by name (null for an unknown name). */
custom_op steerlm_kernel(const char *name) {
    if (strcmp(name, "relayout") == 0) return steerlm_relayout;
#ifdef HAVE_X86
    if (strcmp(name, "gemm_bf16") == 0) {
        /* only where the CPU has VDPBF16PS; elsewhere the engine keeps ggml's mul_mat */
        if (have_bf16 < 0) have_bf16 = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
        return have_bf16 ? steerlm_gemm_bf16 : 0;
    }
    if (strncmp(name, "gemm_", 5) == 0) {
        if (have_avx512 < 0) have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
        if (!have_avx512) return 0;
        if (strcmp(name, "gemm_f32") == 0) return steerlm_gemm_f32;
        if (strcmp(name, "gemm_f16") == 0) return steerlm_gemm_f16;
        if (strcmp(name, "gemm_q8_0") == 0) return steerlm_gemm_q8_0;
        if (strcmp(name, "gemm_bf16_f32") == 0) return steerlm_gemm_bf16_f32;
    }
#endif
    return 0;
}

