/*
 * SwiGLU's backward pass, act = silu(g) ⊙ u: dg = da·u·s·(1 + g·(1 − s)) and du = da·g·s with s = σ(g),
 * in one pass that reads da, g, u once and writes both gradients. ggml takes four ops and passes for it
 * (mul, silu_back with a scalar expf per element, silu, mul).
 */
#include <math.h>

#include "kernels.h"

#ifdef HAVE_X86
/* whole vectors of 16 in [a, b); returns where the scalar tail starts */
__attribute__((target("avx512f"))) static int64_t swiglu_back_avx512(const float *da, const float *g, const float *u,
                                                                   float *dg, float *du, int64_t a, int64_t b) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = a;
    for (; i + 16 <= b; i += 16) {
        const __m512 gi = _mm512_loadu_ps(g + i), di = _mm512_loadu_ps(da + i);
        const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gi))));
        const __m512 dus = _mm512_mul_ps(di, _mm512_loadu_ps(u + i));
        const __m512 t = _mm512_fmadd_ps(gi, _mm512_sub_ps(one, s), one);
        _mm512_storeu_ps(dg + i, _mm512_mul_ps(_mm512_mul_ps(dus, s), t));
        _mm512_storeu_ps(du + i, _mm512_mul_ps(di, _mm512_mul_ps(gi, s)));
    }
    return i;
}

TARGET_AVX2 static int64_t swiglu_back_avx2(const float *da, const float *g, const float *u, float *dg, float *du,
                                            int64_t a, int64_t b) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = a;
    for (; i + 8 <= b; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i), di = _mm256_loadu_ps(da + i);
        const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gi))));
        const __m256 dus = _mm256_mul_ps(di, _mm256_loadu_ps(u + i));
        const __m256 t = _mm256_fmadd_ps(gi, _mm256_sub_ps(one, s), one);
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(dus, s), t));
        _mm256_storeu_ps(du + i, _mm256_mul_ps(di, _mm256_mul_ps(gi, s)));
    }
    return i;
}
#endif

/* dst f32 [n, 2]: dg then du; src da, g, u f32 contiguous with n elements each */
KERNEL(swiglu_back)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[1];
    const int64_t n = a->ne[0] * a->ne[1] * a->ne[2] * a->ne[3];
    const float *da = (const float *)dst->src[0]->data, *g = (const float *)a->data;
    const float *u = (const float *)dst->src[2]->data;
    float *dg = (float *)dst->data, *du = dg + n;
    const struct share sh = thread_share(n, ith, nth, 16);
    const int64_t lo = sh.lo, hi = sh.hi;
    int64_t i = lo;
#ifdef HAVE_X86
    if (steerlm_have_avx512()) i = swiglu_back_avx512(da, g, u, dg, du, lo, hi);
    else if (steerlm_have_avx2()) i = swiglu_back_avx2(da, g, u, dg, du, lo, hi);
#endif
    for (; i < hi; i++) {
        const float s = 1.0f / (1.0f + expf(-g[i]));
        dg[i] = da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] = da[i] * (g[i] * s);
    }
}
