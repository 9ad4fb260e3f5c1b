/*
 * RMSNorm and its gradient by rows, ggml's formulas: y = x·r with r = 1/√(Σx²/n + eps), and
 * dx = (dy − x·Σx·dy/(Σx² + n·eps))·r. ggml sums each row in a scalar loop (in double), both ways; here the
 * sums are vectorised (16 f32 lanes with AVX-512, 8 with AVX2, two accumulators, added in double at the
 * end). eps travels as the f32 bits of the userdata word.
 */
#include <math.h>

#include "kernels.h"

#ifdef HAVE_X86
__attribute__((target("avx512f"))) static double dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, a + i), _mm512_maskz_loadu_ps(live, b + i), s0);
    }
    return (double)_mm512_reduce_add_ps(s0) + (double)_mm512_reduce_add_ps(s1);
}

/* out = (dy + x·c)·r; without dy, out = x·r */
__attribute__((target("avx512f"))) static void combine_avx512(const float *dy, const float *x, float c, float r,
                                                            float *out, int64_t n) {
    const __m512 cv = _mm512_set1_ps(c), rv = _mm512_set1_ps(r);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(live, x + i);
        const __m512 v = dy ? _mm512_fmadd_ps(xv, cv, _mm512_maskz_loadu_ps(live, dy + i)) : xv;
        _mm512_mask_storeu_ps(out + i, live, _mm512_mul_ps(v, rv));
    }
}

TARGET_AVX2 static double dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i < n; i += 8) {
        const __m256i live = lanes8(n - i);
        s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, live), _mm256_maskload_ps(b + i, live), s0);
    }
    return (double)hsum8(s0) + (double)hsum8(s1);
}

/* whole vectors, then a scalar tail (AMD's masked stores are slow microcode) */
TARGET_AVX2 static void combine_avx2(const float *dy, const float *x, float c, float r, float *out, int64_t n) {
    const __m256 cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(r);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 v = dy ? _mm256_fmadd_ps(xv, cv, _mm256_loadu_ps(dy + i)) : xv;
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, rv));
    }
    for (; i < n; i++) out[i] = (dy ? fmaf(x[i], c, dy[i]) : x[i]) * r;
}
#endif

static double dot(const float *a, const float *b, int64_t n) {
#ifdef HAVE_X86
    if (steerlm_have_avx512()) return dot_avx512(a, b, n);
    if (steerlm_have_avx2()) return dot_avx2(a, b, n);
#endif
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(a[i] * b[i]);
    return sum;
}

static void combine(const float *dy, const float *x, float c, float r, float *out, int64_t n) {
#ifdef HAVE_X86
    if (steerlm_have_avx512()) {
        combine_avx512(dy, x, c, r, out, n);
        return;
    }
    if (steerlm_have_avx2()) {
        combine_avx2(dy, x, c, r, out, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = (dy ? dy[i] + x[i] * c : x[i]) * r;
}

/* dst f32 contiguous; src[0] x f32 contiguous [n, rows]; userdata eps */
KERNEL(rms_norm)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    const struct tensor_abi *a = dst->src[0];
    const float eps = userdata_float(userdata);
    const int64_t n = a->ne[0], rows = a->ne[1] * a->ne[2] * a->ne[3];
    const struct share sh = thread_share(rows, ith, nth, 1);
    for (int64_t r = sh.lo; r < sh.hi; r++) {
        const float *x = (const float *)a->data + r * n;
        const float mean = (float)(dot(x, x, n) / (double)n);
        combine(0, x, 0.0f, 1.0f / sqrtf(mean + eps), (float *)dst->data + r * n, n);
    }
}

/* dst f32 contiguous dx; src[0] dy, src[1] x, f32 contiguous [n, rows]; userdata eps */
KERNEL(rms_norm_back)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    const struct tensor_abi *d = dst->src[0], *a = dst->src[1];
    const float eps = userdata_float(userdata);
    const int64_t n = a->ne[0], rows = a->ne[1] * a->ne[2] * a->ne[3];
    const struct share sh = thread_share(rows, ith, nth, 1);
    for (int64_t r = sh.lo; r < sh.hi; r++) {
        const float *x = (const float *)a->data + r * n, *dy = (const float *)d->data + r * n;
        const double sxx = dot(x, x, n), sxdy = dot(x, dy, n);
        const float rrms = 1.0f / sqrtf((float)sxx / (float)n + eps);
        combine(dy, x, (float)(-sxdy) / ((float)sxx + eps * (float)n), rrms, (float *)dst->data + r * n, n);
    }
}

/*
 * RMSNorm times its gain g, and both gradients, for a pre-norm block: y = x·r⊙g in one pass instead of a norm
 * and a broadcast multiply; dx = rms_norm_back(dy⊙g, x) and dg = Σ_rows dy⊙x·r in one pass over dy and x instead
 * of three multiplies, a reduction and the norm's gradient, with x·r recomputed rather than kept. AVX-512 only
 * (null elsewhere: the model keeps the separate ops). dg's sum over rows is split into a fixed number of runs of
 * rows (the rows of dst after dx), whatever the threads: each run's sum is one row, and the graph adds them up.
 */

#ifdef HAVE_X86
__attribute__((target("avx512f"))) static void norm_gain_avx512(const float *x, const float *g, float r, float *y,
                                                              int64_t n) {
    const __m512 rv = _mm512_set1_ps(r);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + i), rv);
        _mm512_mask_storeu_ps(y + i, live, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(live, g + i)));
    }
}

/* Σ x·(dy⊙g), summed as dot_avx512 */
__attribute__((target("avx512f"))) static double dot_gain_avx512(const float *x, const float *dy, const float *g,
                                                               int64_t n) {
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        const __m512 d = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, dy + i), _mm512_maskz_loadu_ps(live, g + i));
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, x + i), d, s);
    }
    return (double)_mm512_reduce_add_ps(s);
}

/* dx = (dy⊙g + x·c)·r, and dg += dy⊙x·r */
__attribute__((target("avx512f"))) static void combine_gain_avx512(const float *dy, const float *x, const float *g,
                                                                 float c, float r, float *dx, float *dg, int64_t n) {
    const __m512 cv = _mm512_set1_ps(c), rv = _mm512_set1_ps(r);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 live = tail_mask(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(live, x + i), d = _mm512_maskz_loadu_ps(live, dy + i);
        const __m512 v = _mm512_fmadd_ps(xv, cv, _mm512_mul_ps(d, _mm512_maskz_loadu_ps(live, g + i)));
        _mm512_mask_storeu_ps(dx + i, live, _mm512_mul_ps(v, rv));
        const __m512 acc = _mm512_maskz_loadu_ps(live, dg + i);
        _mm512_mask_storeu_ps(dg + i, live, _mm512_fmadd_ps(d, _mm512_mul_ps(xv, rv), acc));
    }
}
#endif

/* What both gain kernels read: x [n, rows] (src[xi]) and g [n] (src[xi + 1]), eps from the userdata */
struct gain_args {
    const float *x, *g;
    float eps;
    int64_t n, rows;
};
static struct gain_args gain_args(const struct tensor_abi *dst, int xi, void *userdata) {
    const struct tensor_abi *a = dst->src[xi];
    return (struct gain_args){(const float *)a->data, (const float *)dst->src[xi + 1]->data, userdata_float(userdata),
                              a->ne[0], a->ne[1] * a->ne[2] * a->ne[3]};
}

/* dst f32 [n, rows]: y; src[0] x f32 contiguous [n, rows], src[1] g f32 [n]; userdata eps */
KERNEL(rms_norm_gain)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
#ifdef HAVE_X86
    const struct gain_args z = gain_args(dst, 0, userdata);
    const struct share sh = thread_share(z.rows, ith, nth, 1);
    for (int64_t r = sh.lo; r < sh.hi; r++) {
        const float *x = z.x + r * z.n;
        const float mean = (float)(dot(x, x, z.n) / (double)z.n);
        norm_gain_avx512(x, z.g, 1.0f / sqrtf(mean + z.eps), (float *)dst->data + r * z.n, z.n);
    }
#else
    (void)dst, (void)ith, (void)nth, (void)userdata;
#endif
}

/* dst f32 [n, rows + parts]: dx, then dg's partial sums over runs of rows; src[0] dy, src[1] x f32 contiguous [n, rows],
   src[2] g f32 [n]; userdata eps */
KERNEL(rms_norm_gain_back)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
#ifdef HAVE_X86
    const struct gain_args z = gain_args(dst, 1, userdata);
    const float *g = z.g;
    const float eps = z.eps;
    const int64_t n = z.n, rows = z.rows, parts = dst->ne[1] - rows, per = (rows + parts - 1) / parts;
    for (int64_t part = ith; part < parts; part += nth) {
        float *dg = (float *)dst->data + (rows + part) * n;
        memset(dg, 0, (size_t)n * sizeof(float));
        const int64_t hi = (part + 1) * per < rows ? (part + 1) * per : rows;
        for (int64_t r = part * per; r < hi; r++) {
            const float *x = z.x + r * n, *dy = (const float *)dst->src[0]->data + r * n;
            const double sxx = dot(x, x, n), sxdy = dot_gain_avx512(x, dy, g, n);
            const float rrms = 1.0f / sqrtf((float)sxx / (float)n + eps);
            combine_gain_avx512(dy, x, g, (float)(-sxdy) / ((float)sxx + eps * (float)n), rrms,
                                (float *)dst->data + r * n, dg, n);
        }
    }
#else
    (void)dst, (void)ith, (void)nth, (void)userdata;
#endif
}
