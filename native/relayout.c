/*
 * relayout: a strided f32 tensor (typically a transposed view) written contiguously as f32 or bf16, ne0
 * zero-padded: one cache-blocked pass where ggml needs per-element memcpy or separate transpose, pad and
 * cast passes. The training backward makes many of these (every weight gradient is a GEMM over tokens).
 */
#include "kernels.h"

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

/* block16 on AVX2 for f32: an 8x8 block, a[i] = 8 consecutive floats of source column c0+i */
TARGET_AVX2 static void block8(const char *s, size_t s0, char *d, size_t drow) {
    __m256 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_loadu_ps((const float *)(s + (size_t)i * s0));
    transpose8(a);
    for (int r = 0; r < 8; r++) _mm256_storeu_ps((float *)(d + (size_t)r * drow), a[r]);
}
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
    const int wide = steerlm_have_avx512(), narrow = !wide && !bf16 && steerlm_have_avx2();
    if (s1 == sizeof(float) && (wide || narrow)) {
        /* source contiguous along the destination rows: 16x16 (AVX2, f32: 8x8) register transposes, scalar edges */
        const int64_t v = wide ? 16 : 8;
        const int64_t n0v = n0 & ~(v - 1), rv = i1a + ((i1b - i1a) & ~(v - 1));
        for (int64_t r0 = i1a; r0 < rv; r0 += v)
            for (int64_t c0 = 0; c0 < n0v; c0 += v) {
                const char *s = sbase + (size_t)c0 * s0 + (size_t)r0 * 4;
                char *d = dbase + ((size_t)r0 * (size_t)d0 + (size_t)c0) * esize;
                if (wide) block16(s, s0, d, (size_t)d0 * esize, bf16);
                else block8(s, s0, d, (size_t)d0 * 4);
            }
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

KERNEL(relayout)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *src = dst->src[0];
    const int64_t n1 = src->ne[1], n2 = src->ne[2], n3 = src->ne[3];
    const int64_t tiles = (n1 + TILE - 1) / TILE;
    const int64_t jobs = tiles * n2 * n3;
    /* contiguous chunks of jobs per thread: neighbouring tiles share source cache lines */
    const struct share sh = thread_share(jobs, ith, nth, 1);
    for (int64_t j = sh.lo; j < sh.hi; j++) {
        const int64_t t = j % tiles, i2 = (j / tiles) % n2, i3 = j / (tiles * n2);
        const int64_t a = t * TILE, b = a + TILE < n1 ? a + TILE : n1;
        relayout_rows(src, dst, a, b, i2, i3);
    }
}
