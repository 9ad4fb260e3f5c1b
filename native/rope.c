/*
 * RoPE as ggml_rope_ext computes it without frequency factors or context extension (the only form steerlm
 * builds), in two kernels. rope_table: for each token, cos and sin of the angles of its n/2 rotated pairs,
 * made as ggml makes them (θ = pos, then θ·base^(-2/n) pair after pair, in f32). One table serves every rope
 * of a graph over the same positions (q and k, every layer, forward and backward), where ggml recomputes
 * them for every token of every op. rope: the rotation by the table, or its inverse (the gradient: sin
 * negated), vectorised; dims past n are copied. Its userdata word: bit 0 neox (pairs i, i + n/2; else
 * adjacent pairs 2i, 2i + 1), bit 1 inverse.
 */
#include <math.h>

#include "kernels.h"

/* dst f32 [n, T]: row t holds cos of pair 0..n/2-1, then sin; src[0] positions i32 [T]; userdata base (f32) */
KERNEL(rope_table)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    const int64_t n = dst->ne[0], T = dst->ne[1], h = n / 2;
    const float scale = powf(userdata_float(userdata), -2.0f / (float)n);
    const int32_t *pos = (const int32_t *)dst->src[0]->data;
    const struct share sh = thread_share(T, ith, nth, 1);
    for (int64_t t = sh.lo; t < sh.hi; t++) {
        float *c = (float *)dst->data + t * n, *s = c + h;
        float theta = (float)pos[t];
        for (int64_t i = 0; i < h; i++) {
            c[i] = cosf(theta);
            s[i] = sinf(theta);
            theta *= scale;
        }
    }
}

/* one row of n rotated dims: y = x·cos ∓ partner·sin */
static void rotate_scalar(const float *x, const float *c, const float *s, float sg, int neox, int64_t n, float *y) {
    const int64_t h = n / 2;
    for (int64_t i = 0; i < h; i++) {
        const int64_t j0 = neox ? i : 2 * i, j1 = neox ? i + h : 2 * i + 1;
        const float x0 = x[j0], x1 = x[j1], sn = s[i] * sg;
        y[j0] = x0 * c[i] - x1 * sn;
        y[j1] = x0 * sn + x1 * c[i];
    }
}

#ifdef HAVE_X86
/* neox with n/2 a multiple of 16: the halves are two vectors' worth of the same angles */
__attribute__((target("avx512f"))) static void rotate_neox_avx512(const float *x, const float *c, const float *s,
                                                                float sg, int64_t n, float *y) {
    const int64_t h = n / 2;
    const __m512 g = _mm512_set1_ps(sg);
    for (int64_t i = 0; i < h; i += 16) {
        const __m512 cv = _mm512_loadu_ps(c + i), sv = _mm512_mul_ps(_mm512_loadu_ps(s + i), g);
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + h);
        _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_mul_ps(x0, cv), _mm512_mul_ps(x1, sv)));
        _mm512_storeu_ps(y + i + h, _mm512_add_ps(_mm512_mul_ps(x0, sv), _mm512_mul_ps(x1, cv)));
    }
}

/* adjacent pairs with n a multiple of 16: each angle spread over its pair's two lanes, the pair swapped */
__attribute__((target("avx512f"))) static void rotate_pairs_avx512(const float *x, const float *c, const float *s,
                                                                 float sg, int64_t n, float *y) {
    const __m512i spread = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    /* lane 2i gets -sin (x0·cos − x1·sin), lane 2i+1 +sin (x1·cos + x0·sin) */
    const __m512 sign = _mm512_mul_ps(_mm512_set_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1),
                                      _mm512_set1_ps(sg));
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 cv = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_loadu_ps(c + i / 2)));
        const __m512 sv = _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_loadu_ps(s + i / 2))), sign);
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512 swapped = _mm512_permute_ps(v, 0xB1);
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(v, cv), _mm512_mul_ps(swapped, sv)));
    }
}

/* the same two rotations on 8 lanes (AVX2 without AVX-512): n/2, or n, a multiple of 8 */
TARGET_AVX2 static void rotate_neox_avx2(const float *x, const float *c, const float *s, float sg, int64_t n, float *y) {
    const int64_t h = n / 2;
    const __m256 g = _mm256_set1_ps(sg);
    for (int64_t i = 0; i < h; i += 8) {
        const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_mul_ps(_mm256_loadu_ps(s + i), g);
        const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + h);
        _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_mul_ps(x0, cv), _mm256_mul_ps(x1, sv)));
        _mm256_storeu_ps(y + i + h, _mm256_add_ps(_mm256_mul_ps(x0, sv), _mm256_mul_ps(x1, cv)));
    }
}

TARGET_AVX2 static void rotate_pairs_avx2(const float *x, const float *c, const float *s, float sg, int64_t n, float *y) {
    const __m256i spread = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    const __m256 sign = _mm256_mul_ps(_mm256_set_ps(1, -1, 1, -1, 1, -1, 1, -1), _mm256_set1_ps(sg));
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 cv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i / 2)), spread);
        const __m256 sv =
            _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i / 2)), spread), sign);
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 swapped = _mm256_permute_ps(v, 0xB1);
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(v, cv), _mm256_mul_ps(swapped, sv)));
    }
}
#endif

/* The rotation's code path for n dims: 2 AVX-512 where it runs and the dims fill 16 lanes, 1 AVX2 where it runs
   and they fill 8, else 0 */
int steerlm_rope_level(int neox, int64_t n) {
    const int64_t h = n / 2;
#ifdef HAVE_X86
    if (steerlm_have_avx512() && (neox ? h % 16 == 0 : n % 16 == 0)) return 2;
    if (steerlm_have_avx2() && (neox ? h % 8 == 0 : n % 8 == 0)) return 1;
#else
    (void)neox, (void)h;
#endif
    return 0;
}

#define ROPE_AHEAD 8

/* The first n dims of `rows` rows of consecutive tokens, row r at x + r·xs rotated by the table's rows from
   `table` on into y + r·ys (y may be x): y = x·cos ∓ partner·sin (sg = -1: the inverse), on `level`'s path
   (steerlm_rope_level, which the caller works out once) */
void steerlm_rope_rows(int level, const float *x, int64_t xs, const float *table, float sg, int neox, int64_t n,
                       float *y, int64_t ys, int64_t rows) {
#ifndef HAVE_X86
    (void)level;
#endif
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * xs, *c = table + r * n, *s = c + n / 2;
        float *yr = y + r * ys;
#ifdef HAVE_X86
        /* a head's rows lie a whole token apart (attention.c), which the hardware's streams miss */
        if (r + ROPE_AHEAD < rows)
            for (int64_t i = 0; i < n; i += 16) _mm_prefetch((const char *)(xr + ROPE_AHEAD * xs + i), _MM_HINT_T0);
        if (level == 2 && neox) rotate_neox_avx512(xr, c, s, sg, n, yr);
        else if (level == 2) rotate_pairs_avx512(xr, c, s, sg, n, yr);
        else if (level == 1 && neox) rotate_neox_avx2(xr, c, s, sg, n, yr);
        else if (level == 1) rotate_pairs_avx2(xr, c, s, sg, n, yr);
        else
#endif
            rotate_scalar(xr, c, s, sg, neox, n, yr);
    }
}

/* dst f32 like src[0]; src[0] x f32 contiguous [d, heads, T, 1]; src[1] the table [n, T]; userdata the flags */
KERNEL(rope)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    const struct tensor_abi *a = dst->src[0], *tab = dst->src[1];
    const uint32_t flags = userdata_bits(userdata);
    const int neox = flags & 1;
    const float sg = flags & 2 ? -1.0f : 1.0f;
    const int64_t d = a->ne[0], heads = a->ne[1], rows = heads * a->ne[2], n = tab->ne[0];
    const struct share sh = thread_share(rows, ith, nth, 1);
    const int level = steerlm_rope_level(neox, n);
    for (int64_t r = sh.lo; r < sh.hi; r++) {
        const float *x = (const float *)a->data + r * d;
        float *y = (float *)dst->data + r * d;
        steerlm_rope_rows(level, x, d, (const float *)tab->data + (r / heads) * n, sg, neox, n, y, d, 1);
        if (d > n) memcpy(y + n, x + n, (size_t)(d - n) * 4);
    }
}
