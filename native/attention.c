/*
 * Causal self-attention in one node (steerlm_attention) and its gradient in another (steerlm_attention_back):
 * softmax(q·kᵀ·scale + mask)·v, with each head's T × T scores kept in a thread's scratch a block of 32 queries
 * at a time instead of materialised for every head, and only the keys up to each block's last query computed.
 * The graph of products and softmax (src/model/attention.ts) computes the whole square, writes it out and
 * reads it back four times, and copies q, k, v and the output between token-major and head-major layouts;
 * these kernels read and write the projections' own layout. RoPE is applied to q and k as they are read, and
 * its inverse to dq and dk as they are written (rope.c's rotation, by the graph's table of cos and sin), so the
 * graph has no rope nodes around attention either. The backward recomputes the probabilities from the forward's
 * log-sum-exp of each row rather than keeping them.
 *
 * On AMX (head dims of 64 and more) the products run on the tiles, both operands split in three bf16 parts as
 * gemm.c's f32 × f32 kind splits them: a head's keys and values once a unit (the backward: once a run of the query
 * heads that read them), a block's rows where they are used.
 * Each row's mask is read as a span of keys where it is one (row_spans), once a sequence, not once a head.
 *
 * The mask must hide every key after its query (attentionValues makes it so: causal plus padding); keys
 * before a query are masked as the mask says. AVX-512 only, head dim a multiple of 16: elsewhere the model
 * builds the graph.
 *
 * Layouts (ggml order, N = T·B tokens): q [HD, H, N] and k [HD, KV, N] before RoPE, v [HD, KV, N] (query head
 * h reads kv head h / (H/KV)), mask [T, T, 1, B], the RoPE table [HD, N] (rope.c; neox pairs or adjacent ones
 * by the kernel's name). The forward's dst: o [HD·H, N], then lse [H, N]. The backward's srcs: q, k, v, mask,
 * the table, the forward's dst, dO [HD·H, N]; its dst: dq [HD, H, N], then each query head's share of dk and of
 * dv, [HD, H, N] each (the graph adds the shares of the heads that read one kv head), all gradients of the
 * inputs before RoPE.
 */
#include <math.h>
#include <stdio.h>

#include "gemm.h"

#ifdef HAVE_X86
#define AVX512 __attribute__((target("avx512f")))
/* query rows a block: the scores' scratch is 32 rows of the padded keys */
#define QB 32

/* c[r][0, 16·NV) (+)= Σ_l a[r·ars + l·als] · b[l·bls + (0, 16·NV)] for r < R, R·NV accumulators in registers */
static inline __attribute__((always_inline)) AVX512 void tile(const int R, const int NV, int64_t n, const float *a,
                                                              int64_t ars, int64_t als, const float *b, int64_t bls,
                                                              float *c, int64_t crs, int add) {
    __m512 x[8][2];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) x[r][v] = add ? _mm512_loadu_ps(c + r * crs + 16 * v) : _mm512_setzero_ps();
    for (int64_t l = 0; l < n; l++) {
        __m512 y[2];
        for (int v = 0; v < NV; v++) y[v] = _mm512_loadu_ps(b + l * bls + 16 * v);
        for (int r = 0; r < R; r++) {
            const __m512 s = _mm512_set1_ps(a[r * ars + l * als]);
            for (int v = 0; v < NV; v++) x[r][v] = _mm512_fmadd_ps(s, y[v], x[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(c + r * crs + 16 * v, x[r][v]);
}

#define TILE(R, NV)                                                                                            \
    static AVX512 void tile_##R##_##NV(int64_t n, const float *a, int64_t ars, int64_t als, const float *b,    \
                                       int64_t bls, float *c, int64_t crs, int add) {                          \
        tile(R, NV, n, a, ars, als, b, bls, c, crs, add);                                                      \
    }
TILE(8, 2)
TILE(8, 1)
TILE(1, 2)
TILE(1, 1)

/* c[rows × w] (+)= a[rows × n] · b[n × w], w a multiple of 16: a's (r, l) at a[r·ars + l·als], b's row l at
   b + l·bls, c's row r at c + r·crs. Columns 32 at a time, so that b's slice is read from L1 by every row. */
static AVX512 void product(int64_t rows, int64_t w, int64_t n, const float *a, int64_t ars, int64_t als,
                           const float *b, int64_t bls, float *c, int64_t crs, int add) {
    for (int64_t j = 0; j < w; j += 32) {
        const int two = w - j >= 32;
        int64_t r = 0;
        for (; r + 8 <= rows; r += 8) {
            const float *ar = a + r * ars;
            float *cr = c + r * crs + j;
            if (two) tile_8_2(n, ar, ars, als, b + j, bls, cr, crs, add);
            else tile_8_1(n, ar, ars, als, b + j, bls, cr, crs, add);
        }
        for (; r < rows; r++) {
            const float *ar = a + r * ars;
            float *cr = c + r * crs + j;
            if (two) tile_1_2(n, ar, ars, als, b + j, bls, cr, crs, add);
            else tile_1_1(n, ar, ars, als, b + j, bls, cr, crs, add);
        }
    }
}

#ifdef HAVE_AMX
/*
 * The products on AMX tiles, as gemm.c's f32 × f32 kind runs them (gemm_amx.c): both operands split in three
 * bf16 parts, six of the nine products, within an f32 rounding of each, a micro-tile of 32 × 32 outputs. A head's
 * keys and values, which every block of queries reads, are split once a unit into panels of 32 rows; a block's
 * queries, dO, P and dS are split where they are used.
 */

/* `panels` panels of MR rows (float k of panel p's row j at src + p·step + k·ldk + j), kf floats of K padded
   with zeros to k2 pairs, split: panel p at out + p·3·k2·MR */
static void amx_panels(const float *src, int64_t step, int64_t ldk, int64_t panels, int64_t kf, int64_t k2,
                       uint32_t *out) {
    for (int64_t p = 0; p < panels; p++) amx_split_a(src + p * step, ldk, MR, kf, k2, out + p * 3 * k2 * MR);
}

/* out[r·ldo + p·MR + j] = Σ_k x[r·xs + k] · (row j of panel p) for x's rows (at most 32) and n panels split
   with pk2 pairs: the first k2 of them, kf floats of x's (its rows split in bx) */
static void amx_rows_by_panels(const uint32_t *panels, int64_t pk2, int64_t n, int64_t k2, int64_t kf, const float *x,
                               int64_t xs, int64_t rows, uint32_t *bx, float *out, int64_t ldo) {
    amx_pack_b_split((const char *)x, (size_t)xs * 4, 0, rows, k2, kf, bx, k2 * AMX_NR);
    for (int64_t p = 0; p < n; p++)
        amx_micro_split2(panels + p * 3 * pk2 * MR, bx, k2 * AMX_NR, k2, out + p * MR, (size_t)ldo, MR, rows, 0);
}

/* acc[j·HD + d] += Σ_r m[r·ldm + j] · x[r·xs + d] over a block's rows r (at most 32: one chunk of 16 pairs), keys
   j < keys: x's columns split as panels of d, m's transposed 32 keys at a time (dK += dSᵀ·Q, dV += Pᵀ·dO) */
static void amx_acc_transposed(const float *m, int64_t ldm, int64_t keys, const float *x, int64_t xs, int64_t rows,
                               int64_t HD, uint32_t *ax, uint32_t *bt, float *acc) {
    amx_panels(x, MR, xs, HD / MR, rows, 16, ax);
    for (int64_t j0 = 0; j0 < keys; j0 += AMX_NR) {
        const int64_t cols = keys - j0 < AMX_NR ? keys - j0 : AMX_NR;
        amx_pack_bt_split((const char *)m, (size_t)ldm * 4, j0, cols, 0, 16, rows, bt, 16 * AMX_NR);
        for (int64_t dp = 0; dp < HD / MR; dp++)
            amx_micro_split2(ax + dp * 3 * 16 * MR, bt, 16 * AMX_NR, 16, acc + j0 * HD + dp * MR, (size_t)HD, MR, cols, 1);
    }
}

/* words of split scratch a forward unit needs (keys' and values' panels, a block's split rows) and a backward's
   (keys', values' and roped keys' panels, a block's split rows, x's panels and m's transposed block) */
static int64_t amx_words(int64_t HD, int64_t Lp, int back) {
    const int64_t rows = 3 * AMX_NR * ((Lp > HD ? Lp : HD) / 2);
    return back ? 9 * HD * Lp / 2 + 48 * HD + 48 * AMX_NR + rows : 3 * HD * Lp + rows;
}
#endif

/* Each query row of a sequence's mask as a span: 0 on keys [lo, hi) and -inf elsewhere (a real query's row of
   attentionValues' mask, with or without padding), lo = -1 where it is not one (a padding query's row), so that
   masked_scores reads the mask only there: every head read the whole of it again (16 MB at 2,048 tokens) */
static AVX512 void row_spans(const float *mask, int64_t T, int32_t *spans) {
    const __m512 zero = _mm512_setzero_ps(), ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < T; i++) {
        int64_t lo = -1, hi = -1;
        for (int64_t j = 0; j < T; j += 16) {
            const __mmask16 live = tail_mask(T - j);
            const __m512 x = _mm512_maskz_loadu_ps(live, mask + i * T + j);
            const __mmask16 z = _mm512_mask_cmpeq_ps_mask(live, x, zero);
            const unsigned run = (unsigned)z >> (z ? __builtin_ctz(z) : 0);
            /* only 0 and -inf, the zeros one run that goes on from the last chunk's */
            if ((z | _mm512_mask_cmpeq_ps_mask(live, x, ninf)) != live || (run & (run + 1)) != 0 ||
                (z && lo >= 0 && j + __builtin_ctz(z) != hi)) {
                lo = -1;
                break;
            }
            if (z && lo < 0) lo = j + __builtin_ctz(z), hi = lo;
            hi += __builtin_popcount(z);
        }
        spans[2 * i] = (int32_t)lo;
        spans[2 * i + 1] = (int32_t)hi;
    }
}

/* 16 of a row's mask values from j: its span [lo, hi) where it has one, else its first t entries (-inf from t on) */
static inline __attribute__((always_inline)) AVX512 __m512 mask_at(const float *mask, int64_t lo, int64_t hi, int64_t t,
                                                                 int64_t j) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    return lo >= 0 ? _mm512_mask_blend_ps(tail_mask(hi - j) & ~tail_mask(lo - j), ninf, _mm512_setzero_ps())
                   : _mm512_mask_loadu_ps(ninf, tail_mask(t - j), mask + j);
}

/* s[0, L) ← s·scale + the row's mask (mask_at), the row's maximum returned */
static AVX512 float masked_scores(float *s, const float *mask, const int32_t *span, float scale, int64_t L, int64_t t) {
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < L; j += 16) {
        const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(s + j), sc, mask_at(mask, span[0], span[1], t, j));
        _mm512_storeu_ps(s + j, v);
        mx = _mm512_max_ps(mx, v);
    }
    return _mm512_reduce_max_ps(mx);
}

/* The backward's probabilities from the scores and the forward's log-sum-exp in one pass, as masked_scores and
   exp_row make them: s[j] ← e^(s[j]·scale + mask − lse); returns Σ_j P·dP, the softmax gradient's row term */
static AVX512 float probs_dot(float *s, const float *dp, const float *mask, const int32_t *span, float scale, float lse,
                              int64_t L, int64_t t) {
    const __m512 sc = _mm512_set1_ps(scale), top = _mm512_set1_ps(lse);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < L; j += 16) {
        const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(s + j), sc, mask_at(mask, span[0], span[1], t, j));
        const __m512 e = exp_below_avx512(v, top);
        _mm512_storeu_ps(s + j, e);
        acc = _mm512_fmadd_ps(e, _mm512_loadu_ps(dp + j), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* s[j] ← e^(s[j] − top) over [0, L) (exp_below_avx512); returns their sum */
static AVX512 float exp_row(float *s, float top, int64_t L) {
    const __m512 t = _mm512_set1_ps(top);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < L; j += 16) {
        const __m512 e = exp_below_avx512(_mm512_loadu_ps(s + j), t);
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* kt[d·ldt + j] = x's element d of key j < t for one kv head (row stride xs), zero for j in [t, ldt): 16 × 16
   blocks through the registers (ldt a multiple of 16) */
static AVX512 void pack_keys_t(const float *x, int64_t xs, int64_t HD, int64_t t, float *kt, int64_t ldt) {
    __m512 a[16], tr[16];
    for (int64_t j0 = 0; j0 < ldt; j0 += 16) {
        for (int64_t d0 = 0; d0 < HD; d0 += 16) {
            for (int jj = 0; jj < 16; jj++)
                a[jj] = j0 + jj < t ? _mm512_loadu_ps(x + (j0 + jj) * xs + d0) : _mm512_setzero_ps();
            transpose16(a, tr);
            for (int dd = 0; dd < 16; dd++) _mm512_storeu_ps(kt + (d0 + dd) * ldt + j0, tr[dd]);
        }
    }
}

struct shapes {
    int64_t HD, H, KV, T, B, Lp; /* Lp: keys padded to 16, or to 32 on the tiles (their panels) */
    const float *table; /* RoPE's cos and sin [HD, N] */
    int neox, rope_level;
    int amx; /* the products on AMX tiles (amx_* below), both operands split in three */
};

/* rows[r·HD + d] = row r of x (row stride xs) rotated by RoPE at tokens n, n + 1, ... */
static void rope_rows(const struct shapes *z, const float *x, int64_t xs, int64_t rows, int64_t n, float *out) {
    steerlm_rope_rows(z->rope_level, x, xs, z->table + n * z->HD, 1.0f, z->neox, z->HD, out, z->HD, rows);
}

static struct shapes shapes_of(const struct tensor_abi *q, const struct tensor_abi *k, const struct tensor_abi *mask,
                               const struct tensor_abi *table, int neox) {
    const int64_t T = mask->ne[0], HD = q->ne[0];
#ifdef HAVE_AMX
    /* head dims of 64 and more (the real shapes'): at m10's 32 a block's products are one chunk of 16 pairs each,
       and its step ran 3% slower on the tiles than on the FMAs */
    const int amx = HD % 32 == 0 && HD >= 64 && steerlm_have_amx();
#else
    const int amx = 0;
#endif
    const int64_t pad = amx ? 32 : 16;
    return (struct shapes){HD, q->ne[1], k->ne[1], T, q->ne[2] / T, (T + pad - 1) / pad * pad, (const float *)table->data,
                           neox, steerlm_rope_level(neox, HD), amx};
}

/* out of memory aborts with a message, as gemm.c's scratch does: never a silently wrong gradient */
static float *scratch(int64_t floats) {
    float *p = aligned_alloc(64, (size_t)((floats * 4 + 63) / 64 * 64));
    if (!p) {
        fprintf(stderr, "steerlm attention: cannot allocate %lld KB of scratch\n", (long long)(floats >> 8));
        abort();
    }
    return p;
}

/* A thread's scratch for its units: `floats` for the FMAs' buffers, then the tiles' split words where they run, then
   the row spans of the sequence at hand (row_spans); the tiles configured for the thread meanwhile */
struct unit_scratch {
    float *buf;
    int32_t *spans;
#ifdef HAVE_AMX
    struct amx_state saved;
#endif
};

static struct unit_scratch units_begin(const struct shapes *z, int64_t floats, int back) {
    struct unit_scratch sc;
#ifdef HAVE_AMX
    if (z->amx) {
        floats += amx_words(z->HD, z->Lp, back);
        amx_tiles_on(&sc.saved);
    }
#else
    (void)back;
#endif
    sc.buf = scratch(floats + 2 * z->T);
    sc.spans = (int32_t *)(sc.buf + floats);
    return sc;
}

static void units_end(const struct shapes *z, struct unit_scratch *sc) {
    free(sc->buf);
#ifdef HAVE_AMX
    if (z->amx) amx_tiles_restore(&sc->saved);
#else
    (void)z;
#endif
}

/* a thread's run of query heads [h0, h1) of sequence b that read kv head g (struct run), block by block of queries;
   the kv head's keys and values prepared once a run */
static AVX512 void forward_run(const struct shapes *z, int64_t b, int64_t g, int64_t h0, int64_t h1, const float *q,
                               const float *k, const float *v, const float *mask, const int32_t *spans, float scale,
                               float *o, float *lse, float *buf) {
    const int64_t HD = z->HD, H = z->H, KV = z->KV, T = z->T, Lp = z->Lp;
    const int64_t n0 = b * T;
    float *kt = buf, *kr = kt + HD * Lp, *qs = kr + T * HD, *s = qs + QB * HD;
    rope_rows(z, k + (n0 * KV + g) * HD, KV * HD, T, n0, kr);
    pack_keys_t(kr, HD, HD, T, kt, Lp);
#ifdef HAVE_AMX
    /* keys as panels of 32 keys by HD, values as panels of 32 of HD by the keys */
    uint32_t *ks = (uint32_t *)(s + QB * Lp), *vs = ks + 3 * HD * Lp / 2, *bx = vs + 3 * HD * Lp / 2;
    if (z->amx) {
        amx_panels(kt, MR, Lp, Lp / MR, HD, HD / 2, ks);
        amx_panels(v + (n0 * KV + g) * HD, MR, KV * HD, HD / MR, T, Lp / 2, vs);
    }
#endif
    for (int64_t h = h0; h < h1; h++) {
        for (int64_t i0 = 0; i0 < T; i0 += QB) {
            const int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0, L = (i1 + 15) / 16 * 16;
            rope_rows(z, q + ((n0 + i0) * H + h) * HD, H * HD, rows, n0 + i0, qs);
#ifdef HAVE_AMX
            if (z->amx)
                amx_rows_by_panels(ks, HD / 2, (i1 + MR - 1) / MR, HD / 2, HD, qs, HD, rows, bx, s, Lp);
            else
#endif
                product(rows, L, HD, qs, HD, 1, kt, Lp, s, Lp, 0);
            /* e^(score − max) in s, each row's sum's inverse kept: O is divided by it after the product, not P before */
            float inv[QB];
            for (int64_t i = i0; i < i1; i++) {
                float *row = s + (i - i0) * Lp;
                const float top = masked_scores(row, mask + (n0 + i) * T, spans + 2 * i, scale, L, T);
                const float sum = exp_row(row, top, L);
                inv[i - i0] = 1.0f / sum;
                lse[(n0 + i) * H + h] = top + logf(sum);
            }
            /* keys after i1 have probability 0 for every query of the block */
#ifdef HAVE_AMX
            if (z->amx)
                amx_rows_by_panels(vs, Lp / 2, HD / MR, (i1 + 31) / 32 * 16, i1, s, Lp, rows, bx,
                                   o + ((n0 + i0) * H + h) * HD, H * HD);
            else
#endif
                product(rows, HD, i1, s, Lp, 1, v + (n0 * KV + g) * HD, KV * HD, o + ((n0 + i0) * H + h) * HD, H * HD, 0);
            for (int64_t r = 0; r < rows; r++) {
                float *out = o + ((n0 + i0 + r) * H + h) * HD;
                const __m512 by = _mm512_set1_ps(inv[r]);
                for (int64_t d = 0; d < HD; d += 16) _mm512_storeu_ps(out + d, _mm512_mul_ps(_mm512_loadu_ps(out + d), by));
            }
        }
    }
}

/* a thread's run of query heads [h0, h1) of sequence b that read kv head g: their dq, and the sum of their shares of
   dk and dv in head h0's slot, the run's other slots zeros (the graph adds the slots of each kv head); the kv head's
   keys and values prepared once a run */
static AVX512 void backward_run(const struct shapes *z, int64_t b, int64_t g, int64_t h0, int64_t h1, const float *q,
                                const float *k, const float *v, const float *mask, const int32_t *spans,
                                const float *lse, const float *dout, float scale, float *dq, float *dk, float *dv,
                                float *buf) {
    const int64_t HD = z->HD, H = z->H, KV = z->KV, T = z->T, Lp = z->Lp;
    const int64_t n0 = b * T;
    float *kt = buf, *vt = kt + HD * Lp, *dka = vt + HD * Lp, *dva = dka + T * HD, *kr = dva + T * HD;
    float *p = kr + T * HD, *ds = p + QB * Lp, *qs = ds + QB * Lp;
    rope_rows(z, k + (n0 * KV + g) * HD, KV * HD, T, n0, kr);
    pack_keys_t(kr, HD, HD, T, kt, Lp);
    pack_keys_t(v + (n0 * KV + g) * HD, KV * HD, HD, T, vt, Lp);
    memset(dka, 0, (size_t)(2 * T * HD) * sizeof(float));
#ifdef HAVE_AMX
    /* keys and values as panels of 32 keys by HD, the roped keys as panels of 32 of HD by the keys */
    uint32_t *ks = (uint32_t *)(qs + QB * HD), *vk = ks + 3 * HD * Lp / 2, *kd = vk + 3 * HD * Lp / 2;
    uint32_t *ax = kd + 3 * HD * Lp / 2, *bt = ax + 48 * HD, *bx = bt + 48 * AMX_NR;
    if (z->amx) {
        amx_panels(kt, MR, Lp, Lp / MR, HD, HD / 2, ks);
        amx_panels(vt, MR, Lp, Lp / MR, HD, HD / 2, vk);
        amx_panels(kr, MR, HD, HD / MR, T, Lp / 2, kd);
    }
#endif
    for (int64_t h = h0; h < h1; h++) {
        for (int64_t i0 = 0; i0 < T; i0 += QB) {
            const int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0, L = (i1 + 15) / 16 * 16;
            const int64_t at = (n0 + i0) * H + h; /* the block's first row in q, dO and dq, in heads */
            rope_rows(z, q + at * HD, H * HD, rows, n0 + i0, qs);
#ifdef HAVE_AMX
            if (z->amx) {
                amx_rows_by_panels(ks, HD / 2, (i1 + MR - 1) / MR, HD / 2, HD, qs, HD, rows, bx, p, Lp);
                amx_rows_by_panels(vk, HD / 2, (i1 + MR - 1) / MR, HD / 2, HD, dout + at * HD, H * HD, rows, bx, ds, Lp);
            } else
#endif
            {
                product(rows, L, HD, qs, HD, 1, kt, Lp, p, Lp, 0);
                product(rows, L, HD, dout + at * HD, H * HD, 1, vt, Lp, ds, Lp, 0);
            }
            for (int64_t i = i0; i < i1; i++) {
                const int64_t n = n0 + i;
                float *pr = p + (i - i0) * Lp, *sr = ds + (i - i0) * Lp;
                /* the softmax gradient's row term Σ_j P·dP (= Σ_d dO·o) */
                const __m512 dsum =
                    _mm512_set1_ps(probs_dot(pr, sr, mask + n * T, spans + 2 * i, scale, lse[n * H + h], L, T));
                const __m512 sc = _mm512_set1_ps(scale);
                for (int64_t j = 0; j < L; j += 16) {
                    const __m512 pj = _mm512_loadu_ps(pr + j);
                    _mm512_storeu_ps(sr + j, _mm512_mul_ps(_mm512_mul_ps(pj, sc),
                                                           _mm512_sub_ps(_mm512_loadu_ps(sr + j), dsum)));
                }
            }
#ifdef HAVE_AMX
            if (z->amx)
                amx_rows_by_panels(kd, Lp / 2, HD / MR, (i1 + 31) / 32 * 16, i1, ds, Lp, rows, bx, dq + at * HD, H * HD);
            else
#endif
                product(rows, HD, i1, ds, Lp, 1, kr, HD, dq + at * HD, H * HD, 0);
            steerlm_rope_rows(z->rope_level, dq + at * HD, H * HD, z->table + (n0 + i0) * HD, -1.0f, z->neox, HD,
                              dq + at * HD, H * HD, rows);
#ifdef HAVE_AMX
            if (z->amx) {
                amx_acc_transposed(ds, Lp, i1, qs, HD, rows, HD, ax, bt, dka);
                amx_acc_transposed(p, Lp, i1, dout + at * HD, H * HD, rows, HD, ax, bt, dva);
            } else
#endif
            {
                product(i1, HD, rows, ds, 1, Lp, qs, HD, dka, HD, 1);
                product(i1, HD, rows, p, 1, Lp, dout + at * HD, H * HD, dva, HD, 1);
            }
        }
    }
    steerlm_rope_rows(z->rope_level, dka, HD, z->table + n0 * HD, -1.0f, z->neox, HD, dk + (n0 * H + h0) * HD, H * HD, T);
    const size_t rest = (size_t)((h1 - h0 - 1) * HD) * sizeof(float);
    for (int64_t j = 0; j < T; j++) {
        const int64_t at = ((n0 + j) * H + h0) * HD;
        memcpy(dv + at, dva + j * HD, (size_t)HD * sizeof(float));
        memset(dk + at + HD, 0, rest);
        memset(dv + at + HD, 0, rest);
    }
}

/* Both directions' units are (sequence, query head), a range of them a thread (thread_share: smol135's 9 heads split
   5:4 on two threads, where its 3 kv heads would split 2:1), taken in runs of the heads that read one kv head, each
   of which prepares that kv head's keys and values once (twice in all where two threads' ranges share it) */
struct run {
    int64_t b, g, h0, h1;
};
static struct run run_at(const struct shapes *z, int64_t u, int64_t hi) {
    const int64_t r = z->H / z->KV, h0 = u % z->H, g = h0 / r;
    return (struct run){u / z->H, g, h0, (g + 1) * r < h0 + hi - u ? (g + 1) * r : h0 + hi - u};
}
#endif

/* dst f32, flat: o [HD·H·N] then lse [H·N]; srcs q, k, v, mask, the RoPE table; the scale is the userdata's float */
static void attention(struct tensor_abi *dst, int ith, int nth, void *userdata, int neox) {
#ifdef HAVE_X86
    const struct tensor_abi *q = dst->src[0], *k = dst->src[1];
    const struct shapes z = shapes_of(q, k, dst->src[3], dst->src[4], neox);
    float *o = (float *)dst->data, *lse = o + z.HD * z.H * z.T * z.B;
    struct unit_scratch sc = units_begin(&z, z.HD * z.Lp + z.T * z.HD + QB * z.HD + QB * z.Lp, 0);
    const float *mask = (const float *)dst->src[3]->data;
    const struct share sh = thread_share(z.B * z.H, ith, nth, 1);
    for (int64_t u = sh.lo, seq = -1; u < sh.hi;) {
        const struct run w = run_at(&z, u, sh.hi);
        if (w.b != seq) row_spans(mask + (seq = w.b) * z.T * z.T, z.T, sc.spans);
        forward_run(&z, w.b, w.g, w.h0, w.h1, (const float *)q->data, (const float *)k->data,
                    (const float *)dst->src[2]->data, mask, sc.spans, userdata_float(userdata), o, lse, sc.buf);
        u += w.h1 - w.h0;
    }
    units_end(&z, &sc);
#else
    (void)dst, (void)ith, (void)nth, (void)userdata, (void)neox;
#endif
}

/* dst f32, flat: dq, then each query head's share of dk, then of dv, all three [HD·H·N]; srcs q, k, v, mask, the RoPE
   table, the forward's dst, dO */
static void attention_back(struct tensor_abi *dst, int ith, int nth, void *userdata, int neox) {
#ifdef HAVE_X86
    const struct tensor_abi *q = dst->src[0], *k = dst->src[1];
    const struct shapes z = shapes_of(q, k, dst->src[3], dst->src[4], neox);
    const int64_t N = z.T * z.B;
    const float *lse = (const float *)dst->src[5]->data + z.HD * z.H * N;
    float *dq = (float *)dst->data, *dk = dq + z.HD * z.H * N, *dv = dk + z.HD * z.H * N;
    struct unit_scratch sc = units_begin(&z, 2 * z.HD * z.Lp + 3 * z.T * z.HD + 2 * QB * z.Lp + QB * z.HD, 1);
    const float *mask = (const float *)dst->src[3]->data;
    const struct share sh = thread_share(z.B * z.H, ith, nth, 1);
    for (int64_t u = sh.lo, seq = -1; u < sh.hi;) {
        const struct run w = run_at(&z, u, sh.hi);
        if (w.b != seq) row_spans(mask + (seq = w.b) * z.T * z.T, z.T, sc.spans);
        backward_run(&z, w.b, w.g, w.h0, w.h1, (const float *)q->data, (const float *)k->data,
                     (const float *)dst->src[2]->data, mask, sc.spans, lse, (const float *)dst->src[6]->data,
                     userdata_float(userdata), dq, dk, dv, sc.buf);
        u += w.h1 - w.h0;
    }
    units_end(&z, &sc);
#else
    (void)dst, (void)ith, (void)nth, (void)userdata, (void)neox;
#endif
}

KERNEL(attention)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    attention(dst, ith, nth, userdata, 0);
}
KERNEL(attention_neox)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    attention(dst, ith, nth, userdata, 1);
}
KERNEL(attention_back)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    attention_back(dst, ith, nth, userdata, 0);
}
KERNEL(attention_back_neox)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    attention_back(dst, ith, nth, userdata, 1);
}
