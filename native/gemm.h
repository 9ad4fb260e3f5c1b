/*
 * What the GEMM driver (gemm.c) and its instruction-set variants (gemm_avx512.c, gemm_avx2.c) share: the
 * packed layouts and the table of routines each variant provides. Both variants pack the same layouts, so
 * the driver's blocking, threading and scratch are one piece of code whatever the CPU. The AMX kernel
 * (gemm_amx.c, a bf16 a times a bf16 b, or an f32 b split in three bf16 parts) reads a's panels as they are
 * (an f32 a's it splits too) and packs b its own way, in blocks of AMX_NR columns.
 */
#ifndef STEERLM_GEMM_H
#define STEERLM_GEMM_H
#include "kernels.h"

/* pack_at (a transposed a): words of K whose rows of W are fetched into L2 ahead of the one packed. W's rows lie
   a row's stride apart, which the hardware's prefetchers do not follow (Intel: smol135 and qwen05 LoRA steps 2%
   faster on AMX, smol135's 2-3% on the AVX2 variant; into L1, or 16 ahead, no better) */
#define AT_AHEAD 8
#define MR 32 /* rows of a per panel: AVX-512, two registers of 16 outputs; AVX2, two halves of 16 rows */
#define NR 12 /* columns of b per block: AVX-512, 2 x 12 accumulators; AVX2, two halves of 6 */

/* How a transposed a's words are made from its M-contiguous rows (a row of W is a row of words of Wᵀ).
   AT_Q8_0 never reaches pack_at: the driver packs it with widen_q8_0 (gemm.c, pack_at_q8_0). */
enum at_kind { AT_F32, AT_BF16_PAIRS, AT_BF16, AT_F16, AT_Q8_0 };

/* Packed panels: ap[(p * kc + kp) * MR + j] = word kp of row p*MR + j (0 past the rows), and
   bp[kp * NR + j] = word kp of column j (0 past the columns). */
struct gemm_isa {
    /* rows [m0, m0 + rows) of a K-contiguous a (row stride lda), k2 words from its start */
    void (*pack_a)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k2, uint32_t *ap);
    /* columns [n0, n0 + cols) of a K-contiguous b, cols <= NR */
    void (*pack_b)(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2, uint32_t *bp);
    /* columns [n0, n0 + cols) of a transposed f32 b (N contiguous, row k at b + k*ldk), words [k0, k0 + kc) */
    void (*pack_bt)(const char *b, size_t ldk, int64_t n0, int64_t cols, int64_t k0, int64_t kc, uint32_t *bp);
    /* rows [m0, m0 + rows) of a transposed a (element (m, k) at a + k*ldk + m*size), words [k0, k0 + kc) */
    void (*pack_at)(const char *a, size_t ldk, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
                    enum at_kind kind, uint32_t *ap);
    /* out[rows <= MR, cols <= NR] (column j at out + j*ldo) = (acc ? out : 0) + panel · block, kw words;
       bs: words from one k of b's block to the next (NR when packed) */
    void (*micro_f32)(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                      int64_t rows, int64_t cols, int acc);
    /* the same over bf16 pairs (VDPBF16PS): AVX512-BF16 only, null elsewhere */
    void (*micro_bf16)(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                       int64_t rows, int64_t cols, int acc);
    /* rows [m0, m0 + rows) of a frozen base (f16, bf16, Q8_0), values [k0, k0 + K), widened exactly to f32 */
    void (*widen_f16)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out);
    void (*widen_bf16)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out);
    void (*widen_q8_0)(const char *a, size_t lda, int64_t m0, int64_t rows, int64_t k0, int64_t K, float *out);
    /* words of K per block, a multiple of 32 (Q8_0's blocks): K <= kc runs as one block */
    int64_t kc;
};

/* pack_a's scalar part, both variants: words [k_lo, k2) of panel rows [j_lo, j_hi) of a (the row starting at
   `first`, stride lda), and zero rows from `live` on (past the matrix's rows) */
static inline void pack_a_scalar(const char *first, size_t lda, int64_t j_lo, int64_t j_hi, int64_t live,
                                 int64_t k_lo, int64_t k2, uint32_t *dst) {
    for (int64_t j = j_lo; j < j_hi; j++) {
        const uint32_t *row = j < live ? (const uint32_t *)(first + (size_t)j * lda) : 0;
        for (int64_t kp = k_lo; kp < k2; kp++) dst[kp * MR + j] = row ? row[kp] : 0;
    }
}

#ifdef HAVE_X86
extern const struct gemm_isa gemm_avx512;
extern const struct gemm_isa gemm_avx2;

#endif

/* AMX (gemm_amx.c): bf16 x bf16 (b bf16, or f32 split in three) in blocks of AMX_NR columns of b, K in
   chunks of 16 pairs */
#define AMX_NR 32
#define AMX_KC 1024 /* pairs of K per block: a 128-row chunk of packed a is 512 KB, in L2 */
#define AMX_KC_SPLIT2 64 /* ... and where a is split too (amx_split_a): a panel's three parts (24 KB) and b's block's (24 KB) in L1; half that for 256 rows of a or fewer (split2_job) */
#ifdef HAVE_AMX
/* the thread's tile configuration (64 bytes, palette 0 when it held none), kept while a GEMM uses the tiles
   and loaded back after it, as the kernels give MXCSR back: ggml's own AMX code configures a thread once */
struct amx_state {
    _Alignas(64) unsigned char config[64];
};
void amx_tiles_on(struct amx_state *saved);
void amx_tiles_restore(const struct amx_state *saved);
void amx_pack_b(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2, uint32_t *bp);
/* an f32 b split in three bf16 parts (k2 pairs, of which the first kf floats are b's: K padded with zeros), each
   laid out as amx_pack_b lays one, stride words apart; from K-contiguous rows, or (bt) a transposed view */
void amx_pack_b_split(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2, int64_t kf, uint32_t *bp,
                      int64_t stride);
void amx_pack_bt_split(const char *b, size_t ldk, int64_t n0, int64_t cols, int64_t k0, int64_t k2, int64_t kf,
                       uint32_t *bp, int64_t stride);
void amx_micro(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo, int64_t rows,
               int64_t cols, int acc);
/* amx_micro's product over the three parts of an f32 b that amx_pack_b_split packed, bs words apart (where the
   f32 kernels' bs is b's stride from one k to the next) */
void amx_micro_split(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                     int64_t rows, int64_t cols, int acc);
/* one panel of an f32 a (rows <= MR of it; float k of row j at src + k * ldk + j) split in three bf16 parts, k2
   pairs (a multiple of 16: zeros past kf floats), each chunk of 16 pairs with its three parts together: 3 * k2 *
   MR words */
void amx_split_a(const float *src, int64_t ldk, int64_t rows, int64_t kf, int64_t k2, uint32_t *ap);
/* amx_micro_split's product with a's panel split too (amx_split_a): f32 x f32 */
void amx_micro_split2(const uint32_t *ap, const uint32_t *bp, int64_t bs, int64_t kw, float *out, size_t ldo,
                      int64_t rows, int64_t cols, int acc);
#endif

#endif
