/*
 * GEMMs with f32 accumulation, the product ggml_mul_mat computes: out[M, N] (f32, ne0 = M) from
 * a [K, M] and b [K, N] (rows K-contiguous; both f32, or both bf16 with K even), batched over ne2/ne3
 * with a broadcast over b's. Why not ggml's: its tinyBLAS kernels take dot products along K, which end
 * in a horizontal sum per output; for the short reductions of small models (K = 256) those sums cost
 * as much as the products. Here each instruction multiplies a packed panel of 32 rows of a by one
 * broadcast element of b (bf16: a (k, k+1) pair, VDPBF16PS; f32: one k, FMA) and accumulates 16 outputs
 * per register: no horizontal sums. Both kinds pack 32-bit words (a pair or a float), O(MK + NK).
 * A frozen base stored as f16, bf16 or Q8_0 is widened exactly to f32 chunk by chunk, then packed.
 * a may also be a transposed view (M contiguous, K strided: Wᵀ of a weight W for the backward pass's
 * d x = Wᵀ·d y), packed straight from W: a row of W holds 32 consecutive words of a panel, so no
 * transposed copy of W is kept or made (f32, f16 and bf16; Q8_0 blocks run along K and cannot).
 * b may likewise be an f32 transposed view (N contiguous): its packed block is then a copy of 12 floats a word.
 * A reduction longer than KC words (a large vocabulary's d h = Eᵀ·d z) runs in blocks of KC, the later
 * ones accumulating onto the output, so that packed scratch stays a few MB whatever K is.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "kernels.h"

#define MR 32 /* rows of a per panel: two registers of 16 f32 outputs */
#define NR 12 /* columns of b per block: 2 x 12 accumulators + 2 a registers + 1 broadcast */
#define MC 128 /* rows of a packed at a time (a chunk stays in L2 while b streams through) */
#define KC 4096 /* words of K per block (K <= KC: one block, the products as before) */
#define SCRATCH_LIMIT (1 << 24) /* 32-bit words (64 MB) for b's packed part */

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

/* pack columns [n0, n0 + cols) of a transposed b (N contiguous: element (n, k) at b + k*ldk + n*4), words
   [k0, k0 + kc): word kp of the block is a run of `cols` floats of row k0 + kp (0 past cols), so nothing is
   transposed (the backward's dW = xᵀ·dy and attention's products with Pᵀ read their b so) */
__attribute__((target("avx512f"))) static void pack_bt(const char *b, size_t ldk, int64_t n0, int64_t cols, int64_t k0,
                                                     int64_t kc, uint32_t *bp) {
    const __mmask16 live = tail_mask(cols); /* cols <= NR */
    const char *row = b + (size_t)k0 * ldk + (size_t)n0 * 4;
    for (int64_t kp = 0; kp < kc; kp++)
        _mm512_mask_storeu_ps(bp + kp * NR, (1u << NR) - 1, _mm512_maskz_loadu_ps(live, (const float *)(row + (size_t)kp * ldk)));
}

/* How a transposed a's words are made from its M-contiguous rows (a row of W is a row of words of Wᵀ). */
enum at_kind { AT_F32, AT_BF16_PAIRS, AT_BF16, AT_F16 };

/* pack rows [m0, m0 + rows) of a transposed a, words [k0, k0 + kc): element (m, k) lies at a + k*ldk + m*size.
   Word kp of panel rows m..m+31 comes from one contiguous run of W's row (two rows for bf16 pairs). */
__attribute__((target("avx512f,avx512bw,f16c"))) static void pack_at(const char *a, size_t ldk, int64_t m0,
                                                                 int64_t rows, int64_t k0, int64_t kc,
                                                                 enum at_kind kind, uint32_t *ap) {
    const size_t size = kind == AT_F32 ? 4 : 2;
    for (int64_t p = 0; p * MR < rows; p++) {
        uint32_t *dst = ap + (size_t)p * (size_t)kc * MR;
        const int64_t n = rows - p * MR < MR ? rows - p * MR : MR;
        const __mmask32 live = n >= 32 ? 0xffffffffu : (__mmask32)((1u << n) - 1); /* zero rows past M */
        const __mmask16 k0m = (__mmask16)live, k1m = (__mmask16)(live >> 16);
        const char *col = a + (size_t)(m0 + p * MR) * size;
        for (int64_t kp = 0; kp < kc; kp++) {
            __m512i w0, w1;
            if (kind == AT_F32) {
                const float *r = (const float *)(col + (size_t)(k0 + kp) * ldk);
                w0 = _mm512_castps_si512(_mm512_maskz_loadu_ps(k0m, r));
                w1 = _mm512_castps_si512(_mm512_maskz_loadu_ps(k1m, r + 16));
            } else if (kind == AT_BF16_PAIRS) {
                /* word = (a[m][2kp], a[m][2kp+1]): the low half from row 2kp of W, the high half from 2kp+1 */
                const __m512i lo = _mm512_maskz_loadu_epi16(live, col + (size_t)(2 * (k0 + kp)) * ldk);
                const __m512i hi = _mm512_maskz_loadu_epi16(live, col + (size_t)(2 * (k0 + kp) + 1) * ldk);
                w0 = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(lo)),
                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
                w1 = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(lo, 1)),
                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
            } else {
                const __m512i v = _mm512_maskz_loadu_epi16(live, col + (size_t)(k0 + kp) * ldk);
                const __m256i h0 = _mm512_castsi512_si256(v), h1 = _mm512_extracti64x4_epi64(v, 1);
                if (kind == AT_BF16) {
                    w0 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h0), 16);
                    w1 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16);
                } else {
                    w0 = _mm512_castps_si512(_mm512_cvtph_ps(h0));
                    w1 = _mm512_castps_si512(_mm512_cvtph_ps(h1));
                }
            }
            _mm512_storeu_si512(dst + kp * MR, w0);
            _mm512_storeu_si512(dst + kp * MR + 16, w1);
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void micro_bf16(const uint32_t *ap,
                                                                                  const uint32_t *bp,
                                                                                  int64_t bs, int64_t k2,
                                                                                  float *out, size_t ldo,
                                                                                  int64_t rows, int64_t cols,
                                                                                  int acc) {
    const __mmask16 k0 = tail_mask(rows), k1 = tail_mask(rows - 16);
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k0, out + (size_t)j * ldo) : _mm512_setzero_ps();
        c1[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k1, out + (size_t)j * ldo + 16) : _mm512_setzero_ps();
    }
    for (int64_t kp = 0; kp < k2; kp++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512(ap + kp * MR);
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512(ap + kp * MR + 16);
        const uint32_t *bk = bp + kp * bs;
        for (int j = 0; j < NR; j++) {
            const __m512bh bj = (__m512bh)_mm512_set1_epi32((int)bk[j]);
            c0[j] = _mm512_dpbf16_ps(c0[j], a0, bj);
            c1[j] = _mm512_dpbf16_ps(c1[j], a1, bj);
        }
    }
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1, c1[j]);
    }
}

__attribute__((target("avx512f"))) static void micro_f32(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t k1,
                                                       float *out, size_t ldo, int64_t rows, int64_t cols, int acc) {
    const __mmask16 k0 = tail_mask(rows), k1m = tail_mask(rows - 16);
    __m512 c0[NR], c1[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k0, out + (size_t)j * ldo) : _mm512_setzero_ps();
        c1[j] = acc && j < cols ? _mm512_maskz_loadu_ps(k1m, out + (size_t)j * ldo + 16) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < k1; k++) {
        const __m512 a0 = _mm512_loadu_ps((const float *)(ap + k * MR));
        const __m512 a1 = _mm512_loadu_ps((const float *)(ap + k * MR + 16));
        const float *bk = (const float *)(bp + k * bs);
        for (int j = 0; j < NR; j++) {
            const __m512 bj = _mm512_set1_ps(bk[j]);
            c0[j] = _mm512_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, bj, c1[j]);
        }
    }
    for (int j = 0; j < NR && j < cols; j++) {
        _mm512_mask_storeu_ps(out + (size_t)j * ldo, k0, c0[j]);
        _mm512_mask_storeu_ps(out + (size_t)j * ldo + 16, k1m, c1[j]);
    }
}

/* bs: words from one k of b's block to the next (NR when packed); acc: add to the output (a later block of K)
   instead of overwriting it */
typedef void (*micro_fn)(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                         int64_t rows, int64_t cols, int acc);

/* Scratch for the packed panels, in a pool of slots kept across calls: a call takes a free slot and gives
   it back. Thread-local buffers were kept by every thread that ever ran a GEMM (a step's graph runs on
   whichever libuv thread koffi picks: four such buffers after four steps); slots are bounded by the
   GEMMs running at once instead. steerlm_gemm_scratch_release() frees the idle ones. */
#define SLOTS 64
static struct {
    atomic_int busy;
    uint32_t *words;
    size_t size;
} pool[SLOTS];

static int slot_take(void) {
    for (;;)
        for (int i = 0; i < SLOTS; i++) {
            int idle = 0;
            if (atomic_compare_exchange_strong(&pool[i].busy, &idle, 1)) return i;
        }
}

/* Failing means the process is out of memory: abort with a message, as ggml does (the engine reports
   native deaths of isolated jobs), never a silently wrong product. */
static uint32_t *slot_words(int i, size_t words) {
    if (words > pool[i].size) {
        free(pool[i].words);
        pool[i].words = (uint32_t *)aligned_alloc(64, ((words * 4 + 63) / 64) * 64);
        pool[i].size = pool[i].words ? words : 0;
        if (!pool[i].words) {
            fprintf(stderr, "steerlm gemm: cannot allocate %zu MB of scratch\n", words * 4 >> 20);
            abort();
        }
    }
    return pool[i].words;
}

/* bytes the pool holds, idle or in use */
size_t steerlm_gemm_scratch_bytes(void) {
    size_t total = 0;
    for (int i = 0; i < SLOTS; i++) total += pool[i].size * 4;
    return total;
}

void steerlm_gemm_scratch_release(void) {
    for (int i = 0; i < SLOTS; i++) {
        int idle = 0;
        if (!atomic_compare_exchange_strong(&pool[i].busy, &idle, 1)) continue;
        free(pool[i].words);
        pool[i].words = 0;
        pool[i].size = 0;
        atomic_store(&pool[i].busy, 0);
    }
}

/* Widens rows [m0, m0 + rows) of a (f16, bf16 or Q8_0), values [k0, k0 + K), to f32, exactly. */
typedef void (*widen_fn)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out);

/* One GEMM's kind: words per row (K/2 pairs for bf16 x bf16, K floats otherwise), its microkernel, and how a
   is read: K-contiguous rows as they are (widen 0) or widened to f32, or transposed (pack_at's kind). */
struct gemm_kind {
    int64_t kw;
    micro_fn micro;
    widen_fn widen;
    int transposed;
    enum at_kind at;
    int into; /* dst is a view of src[0], the product's a and b are src[1] and src[2]: add to dst */
};

static void gemm(struct tensor_abi *dst, int ith, int nth, struct gemm_kind g) {
    const struct tensor_abi *a = dst->src[g.into], *b = dst->src[g.into + 1];
    const int64_t M = a->ne[1], N = b->ne[1], kw = g.kw;
    const int64_t B2 = b->ne[2], B3 = b->ne[3];
    const int bt = b->nb[0] > b->nb[1]; /* b a transposed view (f32 only: see gemm-choice.ts) */
    /* where a is one panel, each block of b is used once: a transposed b's full blocks are read where they lie
       (word k of a block is a run of 12 floats of row k), not copied first (attention's products with Pᵀ) */
    const int direct = bt && M <= MR;
    const int64_t r2 = B2 / a->ne[2], r3 = B3 / a->ne[3];
    const int64_t kblocks = (kw + KC - 1) / KC, kcw = kw < KC ? kw : KC;
    const int64_t mc = MC;
    const int64_t chunks = (M + mc - 1) / mc;
    /* split N too when there are few (chunk, batch) pairs, so every thread gets a fair share (smol135's
       M = 576 is 4.5 chunks); each part repacks its chunk of a, which costs O(MK) against O(MNK) */
    const int64_t blocks = (N + NR - 1) / NR, pairs = chunks * B2 * B3;
    int64_t parts = (4 * (int64_t)nth + pairs - 1) / pairs;
    if (parts > blocks / 4) parts = blocks / 4;
    if (parts < 1) parts = 1;
    /* ... and enough parts that each one's packed columns stay within SCRATCH_LIMIT words */
    const int64_t per_block = NR * kcw, fit = SCRATCH_LIMIT / per_block > 1 ? SCRATCH_LIMIT / per_block : 1;
    if ((blocks + parts - 1) / parts > fit) parts = (blocks + fit - 1) / fit;
    const int64_t jobs = pairs * parts;
    const struct share sh = thread_share(jobs, ith, nth, 1);
    const int64_t ja = sh.lo, jb = sh.hi;
    if (ja >= jb) return;
    /* scratch: one packed chunk of a, then the packed column blocks of this job's part of b */
    const int64_t span = ((blocks + parts - 1) / parts + 1) * NR;
    const int slot = slot_take();
    uint32_t *ap = slot_words(slot, (size_t)(mc * kcw + span * kcw + (g.widen && !g.transposed ? mc * kcw : 0)));
    uint32_t *bp = ap + mc * kcw;
    float *wide = g.widen ? (float *)(bp + span * kcw) : 0; /* a's chunk widened to f32 */
    const size_t ldo = dst->nb[1] / 4;
    /* jobs run chunk-fastest: (i3, i2, part, chunk); a run of them sharing (batch, part) packs each block of
       b's columns once, then every chunk of a against it */
    for (int64_t j = ja; j < jb;) {
        const int64_t group = j / chunks, c_lo = j % chunks;
        const int64_t j_end = (group + 1) * chunks < jb ? (group + 1) * chunks : jb;
        const int64_t c_hi = c_lo + (j_end - j);
        const int64_t part = group % parts, batch = group / parts;
        const int64_t i2 = batch % B2, i3 = batch / B2;
        const int64_t n_lo = blocks * part / parts * NR, n_hi_raw = blocks * (part + 1) / parts * NR;
        const int64_t n_hi = n_hi_raw < N ? n_hi_raw : N;
        const char *abase = (const char *)a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        const char *bbase = (const char *)b->data + i2 * b->nb[2] + i3 * b->nb[3];
        float *obase = (float *)((char *)dst->data + i2 * dst->nb[2] + i3 * dst->nb[3]);
        for (int64_t kb = 0; kb < kblocks; kb++) {
            const int64_t k0 = kb * KC, kc = kw - k0 < KC ? kw - k0 : KC;
            for (int64_t n0 = n_lo; n0 < n_hi; n0 += NR) {
                const int64_t cols = N - n0 < NR ? N - n0 : NR;
                if (direct && cols == NR) continue;
                if (bt)
                    pack_bt(bbase, b->nb[0], n0, cols, k0, kc, bp + (n0 - n_lo) * kc);
                else
                    pack_b(bbase + k0 * 4, b->nb[1], n0, cols, kc, bp + (n0 - n_lo) * kc);
            }
            for (int64_t chunk = c_lo; chunk < c_hi; chunk++) {
                const int64_t m0 = chunk * mc, rows = M - m0 < mc ? M - m0 : mc;
                if (g.transposed)
                    pack_at(abase, a->nb[0], m0, rows, k0, kc, g.at, ap);
                else if (g.widen) {
                    g.widen(abase, a->nb[1], m0, rows, k0, kc, wide);
                    pack_a((const char *)wide, (size_t)kc * 4, 0, rows, kc, ap);
                } else
                    pack_a(abase + k0 * 4, a->nb[1], m0, rows, kc, ap);
                for (int64_t n0 = n_lo; n0 < n_hi; n0 += NR) {
                    const int64_t cols = N - n0 < NR ? N - n0 : NR;
                    const int here = direct && cols == NR;
                    const uint32_t *bb = here ? (const uint32_t *)(bbase + (size_t)k0 * b->nb[0] + (size_t)n0 * 4)
                                              : bp + (n0 - n_lo) * kc;
                    const int64_t bs = here ? (int64_t)(b->nb[0] / 4) : NR;
                    for (int64_t p = 0; p * MR < rows; p++)
                        g.micro(ap + (size_t)p * (size_t)kc * MR, bb, bs, kc,
                                obase + (size_t)n0 * ldo + (size_t)(m0 + p * MR), ldo, rows - p * MR, cols,
                                kb > 0 || g.into);
                }
            }
        }
        j = j_end;
    }
    atomic_store(&pool[slot].busy, 0);
}

/* a transposed: K strided by nb[0], M contiguous (a transposed view of a K-contiguous weight) */
static int a_transposed(const struct tensor_abi *a) {
    return a->nb[0] > a->nb[1];
}

void steerlm_gemm_bf16(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
    gemm(dst, ith, nth, (struct gemm_kind){a->ne[0] / 2, micro_bf16, 0, a_transposed(a), AT_BF16_PAIRS, 0});
}

void steerlm_gemm_f32(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
    gemm(dst, ith, nth, (struct gemm_kind){a->ne[0], micro_f32, 0, a_transposed(a), AT_F32, 0});
}

/* dst (a view of src[0], f32 contiguous) += a·b with a = src[1], b = src[2] as steerlm_gemm_f32 takes them: a
   weight's gradient added straight into its accumulator, with no product tensor and no add pass */
void steerlm_gemm_f32_into(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[1];
    gemm(dst, ith, nth, (struct gemm_kind){a->ne[0], micro_f32, 0, a_transposed(a), AT_F32, 1});
}

__attribute__((target("avx512f,f16c"))) static void widen_f16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                       int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        float *d = out + r * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) _mm512_storeu_ps(d + k, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + k))));
        for (; k < K; k++) d[k] = _cvtsh_ss(src[k]);
    }
}

__attribute__((target("avx512f"))) static void widen_bf16(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *src = (const uint16_t *)(a + (size_t)(m0 + r) * lda) + k0;
        uint32_t *d = (uint32_t *)(out + r * K);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm512_storeu_si512(d + k, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + k))), 16));
        for (; k < K; k++) d[k] = (uint32_t)src[k] << 16;
    }
}

/* Q8_0: blocks of 32 values, an f16 scale then 32 int8 (34 bytes); value = scale * q, as ggml dequantises */
__attribute__((target("avx512f,f16c"))) static void widen_q8_0(const char *a, size_t lda, int64_t m0, int64_t rows,
                                                        int64_t k0, int64_t K, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const char *src = a + (size_t)(m0 + r) * lda + k0 / 32 * 34; /* k0 is a multiple of KC, of 32 */
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

/* a f16, bf16 or Q8_0 (a frozen LoRA base), b f32: a is widened exactly to f32 chunk by chunk, then the f32
   GEMM; a transposed f16 or bf16 a is widened as it is packed (Q8_0 comes K-contiguous only) */
void steerlm_gemm_f16(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
    gemm(dst, ith, nth, (struct gemm_kind){a->ne[0], micro_f32, widen_f16, a_transposed(a), AT_F16, 0});
}

void steerlm_gemm_bf16_f32(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
    gemm(dst, ith, nth, (struct gemm_kind){a->ne[0], micro_f32, widen_bf16, a_transposed(a), AT_BF16, 0});
}

void steerlm_gemm_q8_0(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm(dst, ith, nth, (struct gemm_kind){dst->src[0]->ne[0], micro_f32, widen_q8_0, 0, AT_F32, 0});
}
#else
/* bytes the pool holds, idle or in use */
size_t steerlm_gemm_scratch_bytes(void) {
    size_t total = 0;
    for (int i = 0; i < SLOTS; i++) total += pool[i].size * 4;
    return total;
}

void steerlm_gemm_scratch_release(void) {}
#endif
