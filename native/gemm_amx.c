/*
 * The bf16 x bf16 GEMM on Intel's AMX tiles (Sapphire Rapids and later): TDPBF16PS multiplies a tile of 16
 * rows x 32 bf16 by one of 16 pairs x 16 columns into 16 x 16 f32, 15 times the f32 FMAs' rate of the
 * same core. A micro-tile is 32 columns of b (two tiles of 16 tokens, AMX's "A") by a panel of 32 rows of a
 * (AMX's "B": the panel's words are already the (k, k+1) pairs it takes, 16 rows of words at a panel's
 * stride), four accumulator tiles. Only where K/2 is a multiple of 16 (the hidden and vocabulary sizes of
 * real models); elsewhere the AVX512-BF16 micro-kernel runs. Both round and flush as one: products of bf16
 * are exact in f32, subnormals are read and written as 0. A bf16 a times an f32 b runs here too, b split
 * into three bf16 parts (amx_pack_b_split): three exact products instead of f32 FMAs, summed in f32 (where
 * K/2 is no multiple of 16, the f32 FMAs run). So does an f32 a times an f32 b, a split as well (amx_split_a,
 * K zero-padded to a multiple of 32): six of the nine products, within an f32 rounding of each.
 */
#include "gemm.h"

#ifdef HAVE_AMX
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* eight tiles of 16 rows x 64 bytes: 0-3 accumulators, 4-5 b's tokens, 6-7 a's panel halves. A constant:
   GCC 12 sees no read in _tile_loadconfig and dropped the stores of a local one. */
static const struct tile_config config = {
    .palette = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64}, .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile"))) void amx_tiles_on(struct amx_state *saved) {
    _tile_storeconfig(saved->config);
    __asm__ volatile("" ::: "memory"); /* the store above is an asm without a memory operand */
    _tile_loadconfig(&config);
}

/* the thread's own configuration back, or the tiles released where it held none (so that its context
   switches save no tile data) */
__attribute__((target("amx-tile"))) void amx_tiles_restore(const struct amx_state *saved) {
    if (saved->config[0])
        _tile_loadconfig(saved->config);
    else
        _tile_release();
}

/* columns [n0, n0 + cols) of a K-contiguous bf16 b, k2 pairs (a multiple of 16), as AMX_NR rows of tiles:
   bp[((c * 2 + h) * 16 + i) * 16 + w] = pair 16c + w of column n0 + 16h + i (0 past cols) */
__attribute__((target("avx512f"))) void amx_pack_b(const char *b, size_t ldb, int64_t n0, int64_t cols, int64_t k2,
                                                  uint32_t *bp) {
    for (int64_t r = 0; r < AMX_NR; r++) {
        const uint32_t *row = r < cols ? (const uint32_t *)(b + (size_t)(n0 + r) * ldb) : 0;
        uint32_t *dst = bp + ((r / 16) * 16 + r % 16) * 16;
        for (int64_t c = 0; c < k2 / 16; c++)
            _mm512_storeu_si512(dst + c * 2 * 256, row ? _mm512_loadu_si512(row + c * 16) : _mm512_setzero_si512());
    }
}

/* An f32 x split exactly into three bf16 parts: hi = x rounded to bf16, mid = x - hi rounded to bf16, lo = x - hi
   - mid. Each rounding keeps 8 more of x's 24 significant bits and leaves an exact f32 remainder of at most 16,
   then 8 bits, so hi + mid + lo = x (bar remainders below f32's normal range, flushed as the kernels flush),
   |mid| <= 2^-8 |x| and |lo| <= 2^-16 |x|, the parts' signs independent of x's. Where rounding x would carry
   it past FLT_MAX into inf, hi is x's top 16 bits instead (a cut leaves the same exact remainders; mid then
   up to 2^-7 |x|); an inf or NaN goes whole into hi, so an inf times a value with a zero part gives NaN
   (inf·0) where the FMAs give inf: the result is not finite either way. */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i round_top16(__m512i bits) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u));
}

__attribute__((target("avx512f,avx512bw"))) static void split3(__m512 x, __m512 part[3]) {
    const __m512i bits = _mm512_castps_si512(x), exp = _mm512_set1_epi32(0x7f800000);
    const __mmask16 finite = _mm512_cmpneq_epi32_mask(_mm512_and_si512(bits, exp), exp);
    __m512i hi = round_top16(bits);
    const __mmask16 carried = _mm512_cmpeq_epi32_mask(_mm512_and_si512(hi, exp), exp);
    hi = _mm512_mask_and_epi32(hi, carried, bits, _mm512_set1_epi32((int)0xffff0000u));
    part[0] = _mm512_mask_blend_ps(finite, x, _mm512_castsi512_ps(hi));
    const __m512 r1 = _mm512_maskz_sub_ps(finite, x, part[0]);
    part[1] = _mm512_castsi512_ps(round_top16(_mm512_castps_si512(r1)));
    part[2] = _mm512_sub_ps(r1, part[1]);
}

/* The split of 32 floats, x0's 16 then x1's, as three vectors of 32 bf16 in that order (the layout of
   _mm512_cvtne2ps_pbh(x1, x0)). VCVTNE2PS2BF16 rounds to nearest even, as split3 does, and converting back is a
   shift: hi, then mid from the exact remainder, then lo, eight instructions a part where split3 takes twice as
   many. Where any hi is inf or NaN (x itself, or x rounded past FLT_MAX) split3 decides instead. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void split3x32(__m512 x0, __m512 x1, __m512i part[3]) {
    const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
    const __m512i exp = _mm512_set1_epi16(0x7f80);
    if (__builtin_expect(_mm512_cmpeq_epi16_mask(_mm512_and_si512(hi, exp), exp) != 0, 0)) {
        __m512 p0[3], p1[3];
        split3(x0, p0);
        split3(x1, p1);
        for (int q = 0; q < 3; q++) part[q] = (__m512i)_mm512_cvtne2ps_pbh(p1[q], p0[q]);
        return;
    }
    /* bf16 to f32: the 16 bits become the top of each word */
#define WIDEN(v, half) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, half)), 16))
    const __m512 r0 = _mm512_sub_ps(x0, WIDEN(hi, 0)), r1 = _mm512_sub_ps(x1, WIDEN(hi, 1));
    const __m512i mid = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);
    part[0] = hi;
    part[1] = mid;
    part[2] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(r1, WIDEN(mid, 1)), _mm512_sub_ps(r0, WIDEN(mid, 0)));
#undef WIDEN
}

/* 32 bf16 of e's 16 values then o's (split3x32's layout) as 16 words, each the pair (e, o): e in the low half */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i interleave16(__m512i v) {
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, v);
}

/* columns [n0, n0 + cols) of a K-contiguous f32 b, k2 pairs (a multiple of 16) of which the first kf floats are
   b's (the rest zeros: K padded to a multiple of 32), split in three (split3x32) and laid out as amx_pack_b lays
   one, the q-th part at bp + q * stride: the products with a bf16 a's are exact in f32, so a·b comes to f32's
   accumulation error at AMX's rate. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void amx_pack_b_split(const char *b, size_t ldb, int64_t n0,
                                                                           int64_t cols, int64_t k2, int64_t kf,
                                                                           uint32_t *bp, int64_t stride) {
    for (int64_t r = 0; r < AMX_NR; r++) {
        const float *row = r < cols ? (const float *)(b + (size_t)(n0 + r) * ldb) : 0;
        const size_t at = (size_t)((r / 16) * 16 + r % 16) * 16;
        for (int64_t c = 0; c < k2 / 16; c++) {
            const size_t o = at + (size_t)c * 2 * 256;
            if (!row) {
                for (int q = 0; q < 3; q++) _mm512_storeu_si512(bp + q * stride + o, _mm512_setzero_si512());
                continue;
            }
            /* the 32 floats of K in order: word w is the pair (2w, 2w + 1) */
            __m512i part[3];
            split3x32(_mm512_maskz_loadu_ps(tail_mask(kf - c * 32), row + c * 32),
                      _mm512_maskz_loadu_ps(tail_mask(kf - c * 32 - 16), row + c * 32 + 16), part);
            for (int q = 0; q < 3; q++) _mm512_storeu_si512(bp + q * stride + o, part[q]);
        }
    }
}

/* The same from a transposed f32 b (N contiguous: element (n, k) at b + k*ldk + n*4), floats [k0, k0 + kf) of K
   then zeros to k2 pairs: 32 of b's rows by 16 columns, transposed in registers into each column's 32 values of
   K, are split as amx_pack_b_split splits a row's (dW = xᵀ·dy reads its b so) */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void amx_pack_bt_split(const char *b, size_t ldk, int64_t n0,
                                                                            int64_t cols, int64_t k0, int64_t k2,
                                                                            int64_t kf, uint32_t *bp, int64_t stride) {
    for (int h = 0; h < AMX_NR / 16; h++) {
        const __mmask16 live = tail_mask(cols - 16 * h);
        const char *first = b + (size_t)k0 * ldk + (size_t)(n0 + 16 * h) * 4;
        for (int64_t c = 0; c < k2 / 16; c++) {
            __m512 in[2][16], t[2][16];
            for (int half = 0; half < 2; half++) {
                for (int i = 0; i < 16; i++) {
                    const int64_t k = c * 32 + half * 16 + i;
                    in[half][i] = _mm512_maskz_loadu_ps(k < kf ? live : 0, first + (size_t)k * ldk);
                }
                transpose16(in[half], t[half]);
            }
            uint32_t *dst = bp + (size_t)(c * 2 + h) * 256;
            for (int i = 0; i < 16; i++) {
                __m512i part[3];
                split3x32(t[0][i], t[1][i], part);
                for (int q = 0; q < 3; q++) _mm512_storeu_si512(dst + q * stride + i * 16, part[q]);
            }
        }
    }
}

/* one panel of an f32 a, rows [0, rows) of MR (the rest zeros), floats [0, kf) of K: float k of row j at
   src + k * ldk + j (pack_a's packed panel, ldk = MR; or a transposed a read where it lies, Wᵀ's rows being W's:
   no f32 copy first), split in three (split3x32) into k2 pairs (a multiple of 16, the pairs past kf zeros): chunk
   c of 16 pairs holds its three parts one after the other, part q at ap + (c * 3 + q) * 16 * MR, the pair
   (2w, 2w + 1) of row j at w * MR + j of it, so that the micro-kernel loads each part's tiles from one place */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void amx_split_a(const float *src, int64_t ldk, int64_t rows,
                                                                      int64_t kf, int64_t k2, uint32_t *ap) {
    const __mmask16 live[2] = {tail_mask(rows), tail_mask(rows - 16)};
    for (int64_t c = 0; c < k2 / 16; c++) {
        uint32_t *dst = ap + (size_t)(c * 3) * 16 * MR;
        for (int64_t w = 0; w < 16; w++)
            for (int h = 0; h < 2; h++) {
                const int64_t k = c * 32 + 2 * w;
                __m512i part[3];
                /* (a masked-off load reads nothing: K's padding points at row 0) */
                split3x32(_mm512_maskz_loadu_ps(k < kf ? live[h] : 0, src + (k < kf ? k * ldk : 0) + 16 * h),
                          _mm512_maskz_loadu_ps(k + 1 < kf ? live[h] : 0, src + (k + 1 < kf ? (k + 1) * ldk : 0) + 16 * h),
                          part);
                for (int q = 0; q < 3; q++)
                    _mm512_storeu_si512(dst + (q * 16 + w) * MR + 16 * h, interleave16(part[q]));
            }
    }
}

/* out[rows <= MR, cols <= AMX_NR] (column j at out + j*ldo) = (acc ? out : 0) + panel · block, kw pairs (a
   multiple of 16), over `parts` packed blocks of b `stride_b` words apart (amx_pack_b_split's three: each chunk
   of a's panel is loaded once for all of them). Accumulator tile 2h + q holds columns 16h.. (its rows) by rows
   16q.. of out (its columns). A partial micro-tile goes through a zero-padded copy. */
__attribute__((target("amx-tile,amx-bf16,avx512f"))) static inline void micro(const uint32_t *ap, const uint32_t *bp,
                                                                             int parts, int split_a, int64_t stride_b, int64_t kw,
                                                                             float *out, size_t ldo, int64_t rows,
                                                                             int64_t cols, int acc) {
    const int full = rows == MR && cols == AMX_NR;
    float tmp[4 * 256] __attribute__((aligned(64)));
    float *at[4]; /* tile t's first element: out itself, or its zero-padded copy */
    size_t stride;
    if (full) {
        at[0] = out, at[1] = out + 16, at[2] = out + 16 * ldo, at[3] = out + 16 * ldo + 16;
        stride = ldo * 4;
    } else {
        const __mmask16 k0 = tail_mask(rows), k1 = tail_mask(rows - 16);
        for (int t = 0; t < 4; t++) at[t] = tmp + t * 256;
        stride = 64;
        for (int64_t j = 0; j < AMX_NR; j++) {
            const int live = acc && j < cols;
            float *t0 = at[2 * (j / 16)] + (j % 16) * 16;
            _mm512_store_ps(t0, live ? _mm512_maskz_loadu_ps(k0, out + j * ldo) : _mm512_setzero_ps());
            _mm512_store_ps(t0 + 256, live ? _mm512_maskz_loadu_ps(k1, out + j * ldo + 16) : _mm512_setzero_ps());
        }
    }
    /* GCC's tile loads and stores are asms without memory operands: order them against tmp's plain accesses */
    __asm__ volatile("" ::: "memory");
    if (acc || !full) {
        _tile_loadd(0, at[0], stride);
        _tile_loadd(1, at[1], stride);
        _tile_loadd(2, at[2], stride);
        _tile_loadd(3, at[3], stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    /* (GCC's tile intrinsics are asm statements, with tile numbers spelled into them: macros, not functions) */
#define LOAD_A(at_) do { _tile_loadd(6, (at_), MR * 4); _tile_loadd(7, (at_) + 16, MR * 4); } while (0)
#define LOAD_B(q_)                                                              \
    do {                                                                        \
        const uint32_t *b_ = bp + (q_) * stride_b + c * 2 * 256;                \
        _tile_loadd(4, b_, 64);                                                 \
        _tile_loadd(5, b_ + 256, 64);                                           \
    } while (0)
#define PRODUCT()                                                               \
    do {                                                                        \
        _tile_dpbf16ps(0, 4, 6);                                                \
        _tile_dpbf16ps(1, 4, 7);                                                \
        _tile_dpbf16ps(2, 5, 6);                                                \
        _tile_dpbf16ps(3, 5, 7);                                                \
    } while (0)
    for (int64_t c = 0; c < kw / 16; c++) {
        if (split_a) {
            /* a's parts (amx_split_a) times b's: the six products whose parts' bounds multiply to 2^-16 or more
               of |a|·|b| (hi·hi, hi·mid, mid·hi, hi·lo, mid·mid, lo·hi); the three left out are below 2^-24 +
               2^-24 + 2^-32 of it, an f32 rounding's worth (for |a·b| between about 2^-102, below which the
               flushed lo parts lose more, and FLT_MAX / (1 + 2^-7), above which hi·hi may overflow). Each
               operand's parts are summed smallest first (lo, mid, hi), so that where the other is a power of two
               its three products add up to it exactly (hi + mid alone may round past x: FLT_MAX to inf); 8 pairs
               of tile loads for the 6 products, each load issued right after the last product that reads the
               tile it overwrites, so that it overlaps the products still running (C harness: 1.06-1.1x the
               loads issued in pairs before each product). */
            const uint32_t *a = ap + c * 3 * 16 * MR, *b = bp + c * 2 * 256;
#define A6(q) _tile_loadd(6, a + (q) * 16 * MR, MR * 4)
#define A7(q) _tile_loadd(7, a + (q) * 16 * MR + 16, MR * 4)
#define B4(q) _tile_loadd(4, b + (q) * stride_b, 64)
#define B5(q) _tile_loadd(5, b + (q) * stride_b + 256, 64)
#define D(acc_, bt_, at_) _tile_dpbf16ps(acc_, bt_, at_)
            A6(0); A7(0); B4(2); B5(2);
            D(0, 4, 6); D(2, 5, 6); A6(2); D(1, 4, 7); B4(0); D(3, 5, 7); A7(2); B5(0); /* hi·lo; lo, hi next */
            D(0, 4, 6); D(2, 5, 6); A6(1); D(1, 4, 7); D(3, 5, 7); A7(1);               /* lo·hi; mid */
            D(0, 4, 6); D(1, 4, 7); B4(1); D(2, 5, 6); D(3, 5, 7); B5(1);               /* mid·hi; mid */
            D(0, 4, 6); D(2, 5, 6); A6(0); D(1, 4, 7); D(3, 5, 7); A7(0);               /* mid·mid; hi */
            D(0, 4, 6); D(1, 4, 7); B4(0); D(2, 5, 6); D(3, 5, 7); B5(0);               /* hi·mid; hi */
            D(0, 4, 6); D(1, 4, 7); D(2, 5, 6); D(3, 5, 7);                             /* hi·hi */
#undef A6
#undef A7
#undef B4
#undef B5
#undef D
            continue;
        }
        /* b's parts smallest first (lo, mid, hi), as above */
        LOAD_A(ap + c * 16 * MR);
        for (int q = parts - 1; q >= 0; q--) {
            LOAD_B(q);
            PRODUCT();
        }
    }
#undef LOAD_A
#undef LOAD_B
#undef PRODUCT
    _tile_stored(0, at[0], stride);
    _tile_stored(1, at[1], stride);
    _tile_stored(2, at[2], stride);
    _tile_stored(3, at[3], stride);
    __asm__ volatile("" ::: "memory");
    if (full) return;
    const __mmask16 k0 = tail_mask(rows), k1 = tail_mask(rows - 16);
    for (int64_t j = 0; j < cols; j++) {
        const float *t0 = at[2 * (j / 16)] + (j % 16) * 16;
        _mm512_mask_storeu_ps(out + j * ldo, k0, _mm512_load_ps(t0));
        _mm512_mask_storeu_ps(out + j * ldo + 16, k1, _mm512_load_ps(t0 + 256));
    }
}

/* bf16 b: one packed block (bs unused: amx_pack_b's layout is fixed) */
__attribute__((target("amx-tile,amx-bf16,avx512f"))) void amx_micro(const uint32_t *ap, const uint32_t *bp, int64_t bs,
                                                                   int64_t kw, float *out, size_t ldo, int64_t rows,
                                                                   int64_t cols, int acc) {
    (void)bs;
    micro(ap, bp, 1, 0, 0, kw, out, ldo, rows, cols, acc);
}

/* f32 b split in three (amx_pack_b_split): bs is the words from one part's block to the next */
__attribute__((target("amx-tile,amx-bf16,avx512f"))) void amx_micro_split(const uint32_t *ap, const uint32_t *bp,
                                                                         int64_t bs, int64_t kw, float *out, size_t ldo,
                                                                         int64_t rows, int64_t cols, int acc) {
    micro(ap, bp, 3, 0, bs, kw, out, ldo, rows, cols, acc);
}

/* f32 a and f32 b, both split in three (amx_split_a, amx_pack_b_split or amx_pack_bt_split; bs as for
   amx_micro_split): six of the nine products, within an f32 rounding of each */
__attribute__((target("amx-tile,amx-bf16,avx512f"))) void amx_micro_split2(const uint32_t *ap, const uint32_t *bp,
                                                                          int64_t bs, int64_t kw, float *out, size_t ldo,
                                                                          int64_t rows, int64_t cols, int acc) {
    micro(ap, bp, 3, 1, bs, kw, out, ldo, rows, cols, acc);
}
#endif
