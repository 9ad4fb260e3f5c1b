/*
 * GEMMs with f32 accumulation, the product ggml_mul_mat computes: out[M, N] (f32, ne0 = M) from
 * a [K, M] and b [K, N] (rows K-contiguous; both f32, or both bf16 with K even), batched over ne2/ne3
 * with a broadcast over b's. Why not ggml's: its tinyBLAS kernels take dot products along K, which end
 * in a horizontal sum per output; for the short reductions of small models (K = 256) those sums cost
 * as much as the products. Here each instruction multiplies a packed panel of rows of a by one broadcast
 * element of b (bf16: a (k, k+1) pair, VDPBF16PS; f32: one k, FMA) and accumulates a register of outputs:
 * no horizontal sums. Both kinds pack 32-bit words (a pair or a float), O(MK + NK). The packing and the
 * micro-kernels come in an AVX-512 and an AVX2 variant (gemm_avx512.c, gemm_avx2.c; bf16 x bf16 needs
 * AVX512-BF16, and runs on AMX tiles where the CPU has them: gemm_amx.c); this file is what they share:
 * blocking, threads, scratch.
 * A frozen base stored as f16, bf16 or Q8_0 is widened exactly to f32 chunk by chunk, then packed. On AMX a
 * bf16 base times f32 b (K a multiple of 32, b's rows K-contiguous) runs on the tiles instead: b's block is
 * packed as three bf16 parts that sum exactly to it (amx_pack_b_split), and the three products add up in the
 * f32 tiles, so the result is f32's to its summation order, at 2.5-2.8 times the f32 FMAs' rate. An f32 a
 * times an f32 b runs there too where it pays (split2_on_tiles), both split, six products: 1.2-1.8 times.
 * a may also be a transposed view (M contiguous, K strided: Wᵀ of a weight W for the backward pass's
 * d x = Wᵀ·d y), packed straight from W: a row of W holds 32 consecutive words of a panel, so no
 * transposed copy of W is kept or made (f32, f16 and bf16; Q8_0 blocks run along K and cannot).
 * b may likewise be an f32 transposed view (N contiguous): its packed block is then a copy of 12 floats a word.
 * A reduction longer than the ISA's block of K (gemm.h, kc words) runs in blocks, the later ones
 * accumulating onto the output, so that packed scratch stays a few MB whatever K is (a large vocabulary's
 * d h = Eᵀ·d z) and the packed operands stay in cache.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "gemm.h"

#define MC 128 /* rows of a packed at a time (a chunk stays in L2 while b streams through) */
#define MC_SPLIT2 1024 /* ... where an f32 a is split (amx_split_a): 768 KB in a K block of 64 pairs, in L2 */
#define SPLIT_B_WORDS (1 << 18) /* 1 MB: a split b's packed part kept in L2 (split_kc) */
#define SCRATCH_LIMIT (1 << 24) /* 32-bit words (64 MB) for b's packed part */

#ifdef HAVE_X86
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

/* One GEMM's kind: the ISA's routines, words per row (K/2 pairs where a is read as bf16 pairs, K floats
   otherwise), its micro-kernel, and how a is read: K-contiguous rows as they are (widen 0) or widened to f32,
   or transposed (pack_at's kind). */
struct gemm_kind {
    const struct gemm_isa *isa;
    int64_t kw;
    void (*micro)(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                  int64_t rows, int64_t cols, int acc);
    void (*widen)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out);
    int transposed;
    enum at_kind at;
    int into; /* dst is a view of src[0], the product's a and b are src[1] and src[2]: add to dst */
    int amx;  /* AMX's blocking: its own packing of b, blocks of AMX_NR columns, K blocks of AMX_KC */
    int split; /* AMX, a bf16 times an f32 b: b packed as three exact bf16 parts, a product with each (amx_pack_b_split) */
    int split_a; /* ... and an f32 a too, split in three panel by panel: split2_job's blocking */
};

#if MR != 32
#error "pack_at_q8_0 takes a panel's 32 rows as one Q8_0 block"
#endif
/* a transposed Q8_0 a (a frozen base's Wᵀ, read where it lies): word kp of a panel's 32 rows (m0 a multiple of
   32) is one block of W's row k0 + kp, so a panel is W's rows [k0, k0 + kc) widened over that one block of
   values, the layout widen_q8_0 writes: no transposed copy of W is kept */
static void pack_at_q8_0(const struct gemm_isa *isa, const char *a, size_t ldk, int64_t m0, int64_t rows, int64_t k0,
                         int64_t kc, uint32_t *ap) {
    for (int64_t p = 0; p * MR < rows; p++)
        isa->widen_q8_0(a, ldk, k0, kc, m0 + p * MR, MR, (float *)(ap + (size_t)p * (size_t)kc * MR));
}

#ifdef HAVE_AMX
/* f32 x f32 on the tiles (split_a): one job's chunks of a against its columns [n_lo, n_hi) of b. A chunk of a
   is split panel by panel (a transposed a straight from where it lies), then each block of b's columns is split
   into L1 and met by all of the chunk's panels at once: the split block never goes out to L2 and back, which
   made splitting b cost as much as its products do per element (m10's 256-row products) */
static void split2_job(const struct tensor_abi *a, const struct tensor_abi *b, const char *abase, const char *bbase,
                       float *obase, size_t ldo, int64_t c_lo, int64_t c_hi, int64_t mc, int64_t n_lo, int64_t n_hi,
                       const struct gemm_kind *g, uint32_t *ap, uint32_t *bp, float *wide) {
    const int64_t M = a->ne[1], N = b->ne[1], K = a->ne[0], kw = g->kw;
    /* K blocks of 32 pairs where the job's rows of a are at most 256, 64 above: measured, not derived (m10's
       256-row products ran 1.1-1.2x with 32 in the C harness, its 688 and 4,096 rows 0.9x; smol135's full step,
       its rows 576-1,536, was 2% slower where 32 was chosen by the output's size instead) */
    const int64_t rows_out = (c_hi * mc < M ? c_hi * mc : M) - c_lo * mc;
    const int64_t kmax = rows_out <= 256 ? AMX_KC_SPLIT2 / 2 : AMX_KC_SPLIT2;
    const int64_t stride = AMX_NR * (kw < kmax ? kw : kmax); /* words from one part of b's block to the next */
    const int bt = b->nb[0] > b->nb[1];
    for (int64_t k0 = 0; k0 < kw; k0 += kmax) {
        /* kc pairs of K, of which the first kf floats are a's and b's (the rest zeros: K padded) */
        const int64_t kc = kw - k0 < kmax ? kw - k0 : kmax, kf = K - 2 * k0 < 2 * kc ? K - 2 * k0 : 2 * kc;
        for (int64_t chunk = c_lo; chunk < c_hi; chunk++) {
            const int64_t m0 = chunk * mc, rows = M - m0 < mc ? M - m0 : mc;
            for (int64_t p = 0; p * MR < rows; p++) {
                const int64_t live = rows - p * MR < MR ? rows - p * MR : MR;
                uint32_t *panel = ap + (size_t)(p * 3 * kc * MR);
                if (g->transposed) {
                    const char *src = abase + (size_t)(2 * k0) * a->nb[0] + (size_t)(m0 + p * MR) * 4;
                    /* the next panel's rows fetched while this one is split: a stride the hardware's streams miss */
                    if ((p + 1) * MR < rows)
                        for (int64_t k = 0; k < kf; k++) {
                            _mm_prefetch(src + (size_t)k * a->nb[0] + MR * 4, _MM_HINT_T0);
                            _mm_prefetch(src + (size_t)k * a->nb[0] + MR * 4 + 64, _MM_HINT_T0);
                        }
                    amx_split_a((const float *)src, (int64_t)(a->nb[0] / 4), live, kf, kc, panel);
                } else {
                    g->isa->pack_a(abase + k0 * 8, a->nb[1], m0 + p * MR, live, kf, (uint32_t *)wide);
                    amx_split_a(wide, MR, MR, kf, kc, panel);
                }
            }
            for (int64_t n0 = n_lo; n0 < n_hi; n0 += AMX_NR) {
                const int64_t cols = N - n0 < AMX_NR ? N - n0 : AMX_NR;
                if (bt)
                    amx_pack_bt_split(bbase, b->nb[0], n0, cols, 2 * k0, kc, kf, bp, stride);
                else
                    amx_pack_b_split(bbase + k0 * 8, b->nb[1], n0, cols, kc, kf, bp, stride);
                /* columns of the next block of this job's */
                const int64_t panels = (rows + MR - 1) / MR, next = n0 + AMX_NR < n_hi ? n_hi - n0 - AMX_NR : 0;
                for (int64_t p = 0; p < panels; p++) {
                    /* the next block's floats fetched into L2 while this one's products run, a share before each */
                    if (bt)
                        for (int64_t k = kf * p / panels; k < kf * (p + 1) / panels; k++) {
                            const char *at = bbase + (size_t)(2 * k0 + k) * b->nb[0] + (size_t)(n0 + AMX_NR) * 4;
                            _mm_prefetch(at, _MM_HINT_T1);
                            if (next > 16) _mm_prefetch(at + 64, _MM_HINT_T1);
                        }
                    else
                        for (int64_t r = AMX_NR * p / panels; r < AMX_NR * (p + 1) / panels && r < next; r++)
                            for (int64_t f = 0; f < kf; f += 16)
                                _mm_prefetch(bbase + (size_t)(n0 + AMX_NR + r) * b->nb[1] + (size_t)(2 * k0 + f) * 4, _MM_HINT_T1);
                    g->micro(ap + (size_t)(p * 3 * kc * MR), bp, stride, kc, obase + (size_t)n0 * ldo + (size_t)(m0 + p * MR),
                             ldo, rows - p * MR < MR ? rows - p * MR : MR, cols, k0 > 0 || g->into);
                }
            }
        }
    }
}
#endif

/* AMX, a bf16 a times an f32 b split in three: pairs of K a block, so that b's packed part (three words a pair of
   each of N columns) stays within 1 MB, half of L2, where that still reads a's rows in runs of 320 pairs or more.
   Measured: smol135 LoRA (N = 256, blocks of 336 pairs for up to 768) 4% faster a step on one thread and 5% on
   two; N = 512 (llama1b) 2-11% slower with blocks of 160-256, whose shorter runs of W cost more to read from
   memory than b's part saves in L2, so there blocks stay AMX_KC. */
static int64_t split_kc(int64_t N) {
    const int64_t kc = (SPLIT_B_WORDS / (3 * N)) / 16 * 16;
    return kc >= 320 && kc < AMX_KC ? kc : AMX_KC;
}

static void gemm(struct tensor_abi *dst, int ith, int nth, struct gemm_kind g) {
    const struct tensor_abi *a = dst->src[g.into], *b = dst->src[g.into + 1];
    const int64_t M = a->ne[1], N = b->ne[1], kw = g.kw;
    const int64_t B2 = b->ne[2], B3 = b->ne[3];
    const int bt = b->nb[0] > b->nb[1]; /* b a transposed view (f32 only: see gemm-choice.ts) */
    /* where a is one panel, each block of b is used once: a transposed b's full blocks are read where they lie
       (word k of a block is a run of 12 floats of row k), not copied first (attention's products with Pᵀ) */
    const int direct = bt && M <= MR && !g.amx;
    const int64_t r2 = B2 / a->ne[2], r3 = B3 / a->ne[3];
    const int64_t nr = g.amx ? AMX_NR : NR;
    const int64_t kmax = g.amx ? (g.split_a ? AMX_KC_SPLIT2 : g.split ? split_kc(N) : AMX_KC) : g.isa->kc, kblocks = (kw + kmax - 1) / kmax, kcw = kw < kmax ? kw : kmax;
    const int64_t mc = g.split_a ? (M < MC_SPLIT2 ? (M + MR - 1) / MR * MR : MC_SPLIT2) : MC;
    const int64_t chunks = (M + mc - 1) / mc;
    /* split N too when there are few (chunk, batch) pairs, so every thread gets a fair share (smol135's
       M = 576 is 4.5 chunks); each part repacks its chunk of a, which costs O(MK) against O(MNK) */
    const int64_t blocks = (N + nr - 1) / nr, pairs = chunks * B2 * B3;
    int64_t parts = (4 * (int64_t)nth + pairs - 1) / pairs;
    if (parts > blocks / 4) parts = blocks / 4;
    /* an f32 a's chunk (up to MC_SPLIT2 rows) is split again by each part: one part per thread, even columns */
    if (g.split_a) parts = (nth + pairs - 1) / pairs < blocks ? (nth + pairs - 1) / pairs : blocks;
    if (parts < 1) parts = 1;
    /* ... and enough parts that each one's packed columns stay within SCRATCH_LIMIT words (split_a packs one
       block at a time) */
    const int64_t parts_b = g.split ? 3 : 1; /* packed copies of b's block: one, or the split's three */
    const int64_t per_block = nr * kcw * parts_b, fit = SCRATCH_LIMIT / per_block > 1 ? SCRATCH_LIMIT / per_block : 1;
    if (!g.split_a && (blocks + parts - 1) / parts > fit) parts = (blocks + fit - 1) / fit;
    const int64_t jobs = pairs * parts;
    const struct share sh = thread_share(jobs, ith, nth, 1);
    const int64_t ja = sh.lo, jb = sh.hi;
    if (ja >= jb) return;
    /* scratch: one packed chunk of a, then the packed column blocks of this job's part of b (split_a: one block) */
    const int64_t span = g.split_a ? nr : ((blocks + parts - 1) / parts + 1) * nr;
    const int slot = slot_take();
    /* ... and a's chunk as f32 where it is widened, or a panel of it (twice the words: floats) before it is split */
    const int64_t wide_words = g.split_a ? 2 * MR * kcw : g.widen && !g.transposed ? mc * kcw : 0;
    const int64_t a_words = (g.split_a ? 3 : 1) * mc * kcw; /* a's chunk, split in three where it is */
    uint32_t *ap = slot_words(slot, (size_t)(a_words + parts_b * span * kcw + wide_words));
    uint32_t *bp = ap + a_words;
    const int64_t part_stride = span * kcw; /* a split b: words from one part's packed blocks to the next */
    float *wide = wide_words ? (float *)(bp + parts_b * part_stride) : 0;
    const size_t ldo = dst->nb[1] / 4;
    /* jobs run chunk-fastest: (i3, i2, part, chunk); a run of them sharing (batch, part) packs each block of
       b's columns once, then every chunk of a against it */
    for (int64_t j = ja; j < jb;) {
        const int64_t group = j / chunks, c_lo = j % chunks;
        const int64_t j_end = (group + 1) * chunks < jb ? (group + 1) * chunks : jb;
        const int64_t c_hi = c_lo + (j_end - j);
        const int64_t part = group % parts, batch = group / parts;
        const int64_t i2 = batch % B2, i3 = batch / B2;
        const int64_t n_lo = blocks * part / parts * nr, n_hi_raw = blocks * (part + 1) / parts * nr;
        const int64_t n_hi = n_hi_raw < N ? n_hi_raw : N;
        const char *abase = (const char *)a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        const char *bbase = (const char *)b->data + i2 * b->nb[2] + i3 * b->nb[3];
        float *obase = (float *)((char *)dst->data + i2 * dst->nb[2] + i3 * dst->nb[3]);
#ifdef HAVE_AMX
        if (g.split_a) {
            split2_job(a, b, abase, bbase, obase, ldo, c_lo, c_hi, mc, n_lo, n_hi, &g, ap, bp, wide);
            j = j_end;
            continue;
        }
#endif
        for (int64_t kb = 0; kb < kblocks; kb++) {
            const int64_t k0 = kb * kmax, kc = kw - k0 < kmax ? kw - k0 : kmax;
            for (int64_t n0 = n_lo; n0 < n_hi; n0 += nr) {
                const int64_t cols = N - n0 < nr ? N - n0 : nr;
                if (direct && cols == nr) continue;
#ifdef HAVE_AMX
                /* (a bf16 a: K a multiple of 32, b's rows: all of its kc pairs are b's floats) */
                if (g.split)
                    amx_pack_b_split(bbase + k0 * 8, b->nb[1], n0, cols, kc, 2 * kc, bp + (n0 - n_lo) * kc, part_stride);
                else if (g.amx)
                    amx_pack_b(bbase + k0 * 4, b->nb[1], n0, cols, kc, bp + (n0 - n_lo) * kc);
                else
#endif
                if (bt)
                    g.isa->pack_bt(bbase, b->nb[0], n0, cols, k0, kc, bp + (n0 - n_lo) * kc);
                else
                    g.isa->pack_b(bbase + k0 * 4, b->nb[1], n0, cols, kc, bp + (n0 - n_lo) * kc);
            }
            for (int64_t chunk = c_lo; chunk < c_hi; chunk++) {
                const int64_t m0 = chunk * mc, rows = M - m0 < mc ? M - m0 : mc;
                if (g.transposed && g.at == AT_Q8_0)
                    pack_at_q8_0(g.isa, abase, a->nb[0], m0, rows, k0, kc, ap);
                else if (g.transposed)
                    g.isa->pack_at(abase, a->nb[0], m0, rows, k0, kc, g.at, ap);
                else if (g.widen) {
                    g.widen(abase, a->nb[1], m0, rows, k0, kc, wide);
                    g.isa->pack_a((const char *)wide, (size_t)kc * 4, 0, rows, kc, ap);
                } else
                    g.isa->pack_a(abase + k0 * 4, a->nb[1], m0, rows, kc, ap);
                for (int64_t n0 = n_lo; n0 < n_hi; n0 += nr) {
                    const int64_t cols = N - n0 < nr ? N - n0 : nr;
                    const int here = direct && cols == nr;
                    const uint32_t *bb = here ? (const uint32_t *)(bbase + (size_t)k0 * b->nb[0] + (size_t)n0 * 4)
                                              : bp + (n0 - n_lo) * kc;
                    const int64_t bs = here ? (int64_t)(b->nb[0] / 4) : g.split ? part_stride : nr;
                    for (int64_t p = 0; p * MR < rows; p++)
                        g.micro(ap + (size_t)p * (size_t)kc * MR, bb, bs, kc,
                                obase + (size_t)n0 * ldo + (size_t)(m0 + p * MR), ldo,
                                rows - p * MR < MR ? rows - p * MR : MR, cols, kb > 0 || g.into);
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

/* The f32-b routines this CPU runs (the kernels are only handed out where one of the two applies) */
static const struct gemm_isa *f32_isa(void) {
    return steerlm_have_avx512() ? &gemm_avx512 : &gemm_avx2;
}

#ifdef HAVE_AMX
/* whether a product of kw pairs of K runs on AMX tiles: they take K in chunks of 16 pairs (every hidden, FFN,
   head and vocabulary size of the real shapes), and Linux must lend the tile state */
static int on_tiles(int64_t kw) {
    return kw % 16 == 0 && steerlm_have_amx();
}

/* whether a bf16 a times an f32 b runs on the tiles with b split in three (amx_pack_b_split): b's rows
   K-contiguous (not a transposed view), and a's pairs as on_tiles takes them */
static int split_on_tiles(const struct tensor_abi *a, const struct tensor_abi *b) {
    return b->nb[0] == sizeof(float) && a->ne[0] % 2 == 0 && on_tiles(a->ne[0] / 2);
}

/* f32 x f32: a and b both split (amx_split_a), any K (zero-padded to a multiple of 32), b's rows or its
   transposed view (amx_pack_bt_split). Splitting costs several times the f32 kernels' packing copy, O((M + N)·K)
   against the products' O(MNK), and pays where each packed column of b meets enough rows of a and each packed
   row of a enough columns of b: measured on Sapphire Rapids (one core, C harness), 1.2-1.8x the FMAs from
   M = 128 and N = 128, b's rows or transposed (K = 8 1.2-1.5x), and 1.0x at N = 16-64 (a LoRA rank's columns) */
static int split2_on_tiles(const struct tensor_abi *a, const struct tensor_abi *b) {
    return a->ne[1] >= 128 && b->ne[1] >= 128 && steerlm_have_amx();
}
#endif

static atomic_size_t split_products;

size_t steerlm_gemm_split_products(void) {
    return atomic_load(&split_products);
}

#ifdef HAVE_AMX
/* gemm() with the thread's tile configuration set and given back; split products are counted */
static void gemm_tiles(struct tensor_abi *dst, int ith, int nth, struct gemm_kind g) {
    struct amx_state saved;
    if (g.split && ith == 0) atomic_fetch_add(&split_products, 1);
    amx_tiles_on(&saved);
    gemm(dst, ith, nth, g);
    amx_tiles_restore(&saved);
}
#endif

KERNEL(gemm_bf16)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
    const struct gemm_kind g = {.isa = &gemm_avx512, .kw = a->ne[0] / 2, .micro = gemm_avx512.micro_bf16,
                                .transposed = a_transposed(a), .at = AT_BF16_PAIRS};
#ifdef HAVE_AMX
    if (on_tiles(g.kw)) {
        gemm_tiles(dst, ith, nth, (struct gemm_kind){.isa = g.isa, .kw = g.kw, .micro = amx_micro,
                                                     .transposed = g.transposed, .at = g.at, .amx = 1});
        return;
    }
#endif
    gemm(dst, ith, nth, g);
}

/* f32 a, f32 b; `into`: dst is a view of src[0] and gets a·b added (src[1], src[2]). On AMX, where that pays
   (split2_on_tiles), a and b are both split in three bf16 parts and six of the nine products run on the
   tiles (amx_micro_split2): within an f32 rounding of each product, at 1.2-1.8 times the FMAs' rate */
static void gemm_f32_kind(struct tensor_abi *dst, int ith, int nth, int into) {
    const struct tensor_abi *a = dst->src[into];
    const struct gemm_isa *i = f32_isa();
#ifdef HAVE_AMX
    if (split2_on_tiles(a, dst->src[into + 1])) {
        gemm_tiles(dst, ith, nth, (struct gemm_kind){.isa = i, .kw = (a->ne[0] + 31) / 32 * 16, .micro = amx_micro_split2,
                                                     .transposed = a_transposed(a), .at = AT_F32, .into = into,
                                                     .amx = 1, .split = 1, .split_a = 1});
        return;
    }
#endif
    gemm(dst, ith, nth, (struct gemm_kind){.isa = i, .kw = a->ne[0], .micro = i->micro_f32,
                                           .transposed = a_transposed(a), .at = AT_F32, .into = into});
}

KERNEL(gemm_f32)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm_f32_kind(dst, ith, nth, 0);
}

/* dst (a view of src[0], f32 contiguous) += a·b with a = src[1], b = src[2] as steerlm_gemm_f32 takes them: a
   weight's gradient added straight into its accumulator, with no product tensor and no add pass */
KERNEL(gemm_f32_into)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm_f32_kind(dst, ith, nth, 1);
}

/* a f16, bf16 or Q8_0 (a frozen LoRA base), b f32: a is widened exactly to f32 chunk by chunk, then the f32
   GEMM; a transposed a is widened as it is packed (f16, bf16: pack_at; Q8_0: pack_at_q8_0). bf16 on AMX tiles
   instead: see gemm_bf16_f32 */
static void gemm_widened(struct tensor_abi *dst, int ith, int nth, enum at_kind at,
                         void (*widen)(const char *, size_t, int64_t, int64_t, int64_t, int64_t, float *)) {
    const struct tensor_abi *a = dst->src[0];
    const struct gemm_isa *i = f32_isa();
    gemm(dst, ith, nth, (struct gemm_kind){.isa = i, .kw = a->ne[0], .micro = i->micro_f32, .widen = widen,
                                           .transposed = a_transposed(a), .at = at});
}

KERNEL(gemm_f16)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm_widened(dst, ith, nth, AT_F16, f32_isa()->widen_f16);
}

KERNEL(gemm_bf16_f32)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    const struct tensor_abi *a = dst->src[0];
#ifdef HAVE_AMX
    /* on AMX tiles, where b splits: three exact bf16 products (amx_pack_b_split), a read as bf16 pairs */
    if (split_on_tiles(a, dst->src[1])) {
        gemm_tiles(dst, ith, nth, (struct gemm_kind){.isa = f32_isa(), .kw = a->ne[0] / 2, .micro = amx_micro_split,
                                                     .transposed = a_transposed(a), .at = AT_BF16_PAIRS, .amx = 1,
                                                     .split = 1});
        return;
    }
#else
    (void)a;
#endif
    gemm_widened(dst, ith, nth, AT_BF16, f32_isa()->widen_bf16);
}

KERNEL(gemm_q8_0)(struct tensor_abi *dst, int ith, int nth, void *userdata) {
    (void)userdata;
    gemm_widened(dst, ith, nth, AT_Q8_0, f32_isa()->widen_q8_0);
}
#else
size_t steerlm_gemm_scratch_bytes(void) {
    return 0;
}

void steerlm_gemm_scratch_release(void) {}

size_t steerlm_gemm_split_products(void) {
    return 0;
}
#endif
