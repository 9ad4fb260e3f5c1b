/*
 * The optimiser's two passes over the gradients. ggml takes six for clipping + AdamW: sqr and sum for the
 * norm, mul by the clip factor into a new tensor, opt_step_adamw (a scalar loop), and a scale by 0 to
 * clear the accumulator. Here: one read for the sum of squares (in double), then one pass that scales
 * the gradient, updates m, v and w with ggml's formula and clears the gradient it read. Memory-bound
 * either way, so passes are what cost: on m10 (6.8M weights) the update fell from 25 to ~8 ms a step.
 */
#include <math.h>

#include "kernels.h"

struct adamw_params {
    float alpha, beta1, beta2, eps, keep, beta1h, beta2h, scale;
};

#ifdef HAVE_X86
/* Σ x² over whole vectors of 16, in two double accumulators; *done = elements summed */
__attribute__((target("avx512f"))) static double sum_squares_avx512(const float *x, int64_t n, int64_t *done) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    *done = i;
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* the update on [a, b) in whole vectors of 16; returns where the scalar tail starts */
__attribute__((target("avx512f"))) static int64_t adamw_avx512(const struct adamw_params *q, float *w, float *g,
                                                             float *m, float *v, int64_t a, int64_t b) {
    const __m512 scale = _mm512_set1_ps(q->scale), b1 = _mm512_set1_ps(q->beta1), b2 = _mm512_set1_ps(q->beta2);
    const __m512 c1 = _mm512_set1_ps(1.0f - q->beta1), c2 = _mm512_set1_ps(1.0f - q->beta2);
    const __m512 b1h = _mm512_set1_ps(q->beta1h), b2h = _mm512_set1_ps(q->beta2h), eps = _mm512_set1_ps(q->eps);
    const __m512 keep = _mm512_set1_ps(q->keep), alpha = _mm512_set1_ps(q->alpha);
    int64_t i = a;
    for (; i + 16 <= b; i += 16) {
        const __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), scale);
        const __m512 mi = _mm512_fmadd_ps(_mm512_loadu_ps(m + i), b1, _mm512_mul_ps(gi, c1));
        const __m512 vi = _mm512_fmadd_ps(_mm512_loadu_ps(v + i), b2, _mm512_mul_ps(_mm512_mul_ps(gi, gi), c2));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        const __m512 vh = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vi, b2h)), eps);
        const __m512 step = _mm512_div_ps(_mm512_mul_ps(alpha, _mm512_mul_ps(mi, b1h)), vh);
        _mm512_storeu_ps(w + i, _mm512_fmsub_ps(_mm512_loadu_ps(w + i), keep, step));
        _mm512_storeu_ps(g + i, _mm512_setzero_ps());
    }
    return i;
}

TARGET_AVX2 static double sum_squares_avx2(const float *x, int64_t n, int64_t *done) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    *done = i;
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

TARGET_AVX2 static int64_t adamw_avx2(const struct adamw_params *q, float *w, float *g, float *m, float *v, int64_t a,
                                      int64_t b) {
    const __m256 scale = _mm256_set1_ps(q->scale), b1 = _mm256_set1_ps(q->beta1), b2 = _mm256_set1_ps(q->beta2);
    const __m256 c1 = _mm256_set1_ps(1.0f - q->beta1), c2 = _mm256_set1_ps(1.0f - q->beta2);
    const __m256 b1h = _mm256_set1_ps(q->beta1h), b2h = _mm256_set1_ps(q->beta2h), eps = _mm256_set1_ps(q->eps);
    const __m256 keep = _mm256_set1_ps(q->keep), alpha = _mm256_set1_ps(q->alpha);
    int64_t i = a;
    for (; i + 8 <= b; i += 8) {
        const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), scale);
        const __m256 mi = _mm256_fmadd_ps(_mm256_loadu_ps(m + i), b1, _mm256_mul_ps(gi, c1));
        const __m256 vi = _mm256_fmadd_ps(_mm256_loadu_ps(v + i), b2, _mm256_mul_ps(_mm256_mul_ps(gi, gi), c2));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        const __m256 vh = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, b2h)), eps);
        const __m256 step = _mm256_div_ps(_mm256_mul_ps(alpha, _mm256_mul_ps(mi, b1h)), vh);
        _mm256_storeu_ps(w + i, _mm256_fmsub_ps(_mm256_loadu_ps(w + i), keep, step));
        _mm256_storeu_ps(g + i, _mm256_setzero_ps());
    }
    return i;
}
#endif

/* dst f32 [1] = Σ a², src0 f32 contiguous; one task (a single read of memory-bound data) */
KERNEL(sum_squares)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    (void)nth;
    if (ith != 0) return;
    const struct tensor_abi *a = dst->src[0];
    const int64_t n = a->ne[0] * a->ne[1] * a->ne[2] * a->ne[3];
    const float *x = (const float *)a->data;
    double s = 0;
    int64_t i = 0;
#ifdef HAVE_X86
    if (steerlm_have_avx512()) s = sum_squares_avx512(x, n, &i);
    else if (steerlm_have_avx2()) s = sum_squares_avx2(x, n, &i);
#endif
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    *(float *)dst->data = (float)s;
}

/* src: w, g (the accumulated gradient), m, v (f32, same shape, contiguous), params f32 [7] (ggml's
   opt_step_adamw: alpha, beta1, beta2, eps, wd, beta1h, beta2h), scale f32 [1]. The step uses g·scale;
   g is zeroed after (it is the accumulator of the next step). dst [1] is not written. */
KERNEL(adamw)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    float *w = (float *)dst->src[0]->data, *g = (float *)dst->src[1]->data;
    float *m = (float *)dst->src[2]->data, *v = (float *)dst->src[3]->data;
    const float *p = (const float *)dst->src[4]->data;
    const float scale = *(const float *)dst->src[5]->data;
    const struct tensor_abi *t = dst->src[0];
    const int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    /* multiples of 16 elements per thread: whole vectors, and whole cache lines where the data is 64-byte aligned */
    const struct share sh = thread_share(n, ith, nth, 16);
    const int64_t a = sh.lo, b = sh.hi;
    const struct adamw_params q = {p[0], p[1], p[2], p[3], 1.0f - p[0] * p[4], p[5], p[6], scale};
    int64_t i = a;
#ifdef HAVE_X86
    if (steerlm_have_avx512()) i = adamw_avx512(&q, w, g, m, v, a, b);
    else if (steerlm_have_avx2()) i = adamw_avx2(&q, w, g, m, v, a, b);
#endif
    for (; i < b; i++) {
        const float gi = g[i] * q.scale;
        m[i] = m[i] * q.beta1 + gi * (1.0f - q.beta1);
        v[i] = v[i] * q.beta2 + gi * gi * (1.0f - q.beta2);
        const float mh = m[i] * q.beta1h;
        const float vh = sqrtf(v[i] * q.beta2h) + q.eps;
        w[i] = w[i] * q.keep - q.alpha * mh / vh;
        g[i] = 0.0f;
    }
}
