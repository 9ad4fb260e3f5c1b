/*
 * ggml_soft_max_ext's forward without ALiBi: softmax(a·scale + mask) along each row of a, the mask (f32,
 * optional) broadcast over a's dims 2 and 3. Three passes over a row that stays in L1: the scaled, masked
 * scores and their maximum; e^(x − max) and its sum; the division. ggml's takes six loops a row, the mask's
 * add and the maximum scalar ones. The scale travels as the f32 bits of the userdata word, which ggml copies
 * into the node, so nothing has to outlive the graph. A row without a finite score gives NaN, as ggml's.
 */
#include <math.h>

#include "kernels.h"

#ifdef HAVE_X86
__attribute__((target("avx512f"))) static void row_avx512(const float *x, const float *mask, float scale, float *y,
                                                        int64_t n) {
    const __m512 s = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + i), s);
        if (mask) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(live, mask + i));
        _mm512_mask_storeu_ps(y + i, live, v);
        mx = _mm512_mask_max_ps(mx, live, mx, v);
    }
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        const __m512 e = exp_below_avx512(_mm512_maskz_loadu_ps(live, y + i), top);
        _mm512_mask_storeu_ps(y + i, live, e);
        sum = _mm512_mask_add_ps(sum, live, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, y + i), inv));
    }
}

/* row_avx512 on 8 lanes: whole vectors, then the tail masked (AMD's masked stores are slow microcode) */
TARGET_AVX2 static void row_avx2(const float *x, const float *mask, float scale, float *y, int64_t n) {
    const __m256 s = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    const int64_t nv = n & ~(int64_t)7;
    const __m256i tail = lanes8(n - nv);
    __m256 mx = ninf;
    for (int64_t i = 0; i < nv; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
        if (mask) v = _mm256_add_ps(v, _mm256_loadu_ps(mask + i));
        _mm256_storeu_ps(y + i, v);
        mx = _mm256_max_ps(mx, v);
    }
    if (nv < n) {
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + nv, tail), s);
        if (mask) v = _mm256_add_ps(v, _mm256_maskload_ps(mask + nv, tail));
        _mm256_maskstore_ps(y + nv, tail, v);
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(tail)));
    }
    const __m256 top = _mm256_set1_ps(hmax8(mx));
    const __m256 lo = _mm256_set1_ps(-104.0f);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < nv; i += 8) {
        const __m256 e = exp_avx2(_mm256_max_ps(lo, _mm256_sub_ps(_mm256_loadu_ps(y + i), top)));
        _mm256_storeu_ps(y + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (nv < n) {
        const __m256 e = exp_avx2(_mm256_max_ps(lo, _mm256_sub_ps(_mm256_maskload_ps(y + nv, tail), top)));
        _mm256_maskstore_ps(y + nv, tail, e);
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(tail)));
    }
    const float inv = 1.0f / hsum8(sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < nv; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), iv));
    for (int64_t i = nv; i < n; i++) y[i] *= inv;
}
#endif

static void row_scalar(const float *x, const float *mask, float scale, float *y, int64_t n) {
    float top = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        y[i] = x[i] * scale + (mask ? mask[i] : 0.0f);
        top = y[i] > top ? y[i] : top;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(y[i] - top);
        sum += y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

/* dst f32 contiguous, a's shape (or a view of a itself: a row is read before it is written); src[0] a f32
   contiguous; src[1] the mask, f32 [n0, >= ne1, ne2|1, ne3|1] or none */
KERNEL(soft_max)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    const struct tensor_abi *a = dst->src[0], *m = dst->src[1];
    const float scale = userdata_float(userdata);
    const int64_t n = a->ne[0], ne1 = a->ne[1], ne2 = a->ne[2], rows = ne1 * ne2 * a->ne[3];
    const struct share sh = thread_share(rows, ith, nth, 1);
    for (int64_t r = sh.lo; r < sh.hi; r++) {
        const int64_t i1 = r % ne1, i2 = r / ne1 % ne2, i3 = r / (ne1 * ne2);
        const float *mask = m ? (const float *)((const char *)m->data + i1 * m->nb[1] + i2 % m->ne[2] * m->nb[2] +
                                                i3 % m->ne[3] * m->nb[3])
                              : 0;
        const float *x = (const float *)a->data + r * n;
        float *y = (float *)dst->data + r * n;
#ifdef HAVE_X86
        if (steerlm_have_avx512()) {
            row_avx512(x, mask, scale, y, n);
            continue;
        }
        if (steerlm_have_avx2()) {
            row_avx2(x, mask, scale, y, n);
            continue;
        }
#endif
        row_scalar(x, mask, scale, y, n);
    }
}
