/*
 * The masked cross-entropy's gradient from its softmax, in one pass: d[v, n] = sm[v, n]·w[n], minus w[n]
 * at the column's target. ggml needs three passes over the [V, N] values for it (mul, which broadcasts w
 * one element at a time; get_rows_back, which zero-fills a one-hot and adds w; sub). The same f32
 * operations here (the one-hot's 0 + w, x - 0 = x elsewhere), so the same bits.
 */
#include "kernels.h"

/* dst [V, N] f32; src0 sm [V, N] f32 contiguous; src1 w [1, N] f32; src2 flat targets i32 [N]: n·V + t_n */
KERNEL(cross_entropy_back)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *sm = dst->src[0], *w = dst->src[1], *idx = dst->src[2];
    const int64_t V = sm->ne[0], N = sm->ne[1];
    const struct share sh = thread_share(N, ith, nth, 1);
    const float *ws = (const float *)w->data;
    const int32_t *flat = (const int32_t *)idx->data;
    for (int64_t n = sh.lo; n < sh.hi; n++) {
        const float *s = (const float *)((const char *)sm->data + (size_t)n * sm->nb[1]);
        float *d = (float *)((char *)dst->data + (size_t)n * dst->nb[1]);
        const float wn = ws[n];
        for (int64_t v = 0; v < V; v++) d[v] = s[v] * wn;
        const int64_t t = (int64_t)flat[n] - n * V;
        if (t >= 0 && t < V) d[t] -= 0.0f + wn; /* the one-hot's 0 + w: +0 for w = -0, as ggml */
    }
}
