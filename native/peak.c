/*
 * The machine's arithmetic peak, for `npm run bench -- peak` and the training benchmarks' MFU: a loop of
 * register-only multiply-adds with enough independent accumulators to keep every FMA pipe busy (latency
 * 4-5 cycles × 2 pipes on current x86), no loads or stores, on `threads` threads started together.
 * f32: VFMADD (AVX-512F, 16 lanes, 2 flops a lane; without AVX-512, AVX2's 8 lanes); bf16: AMX's TDPBF16PS
 * where the CPU and Linux allow tiles, else VDPBF16PS (AVX512_BF16, 16 lanes, each two bf16 products summed
 * into f32: 4 flops a lane), the instructions the GEMMs in gemm_amx.c, gemm_avx512.c and gemm_avx2.c run.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "gemm.h"

#define ACC 16 /* independent accumulators: more than latency × pipes, fewer than the 32 registers */
#define ACC2 12 /* AVX2: more than latency × pipes, and with the two constants within its 16 registers */

struct peak_job {
    float (*loop)(int64_t iters);
    int64_t iters;
    atomic_int *go; /* 1: run, -1: stop (not every thread could be started) */
    float sink; /* the accumulators' sum, so that the loop is not optimised away */
    double cpu_seconds; /* the loop's CPU time on this thread */
};

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#ifdef HAVE_X86
__attribute__((target("avx512f"))) static float loop_f32(int64_t iters) {
    __m512 acc[ACC];
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
    /* acc = acc * m + c converges to c / (1 - m): no overflow, no denormals however long it runs */
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
    for (int64_t n = 0; n < iters; n++) {
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
    }
    __m512 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float loop_f32_avx2(int64_t iters) {
    __m256 acc[ACC2];
    for (int i = 0; i < ACC2; i++) acc[i] = _mm256_set1_ps((float)i);
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    for (int64_t n = 0; n < iters; n++) {
        for (int i = 0; i < ACC2; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
    }
    __m256 s = acc[0];
    for (int i = 1; i < ACC2; i++) s = _mm256_add_ps(s, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static float loop_bf16(int64_t iters) {
    __m512 acc[ACC];
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_setzero_ps();
    /* each lane grows by 2 · 2^-10 · 2^-10 an instruction: finite for any iteration count we run */
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3a80); /* bf16 2^-10 */
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3a80);
    for (int64_t n = 0; n < iters; n++) {
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

#endif

#ifdef HAVE_AMX
/* AMX: four accumulator tiles, each TDPBF16PS 16 x 16 lanes x 32 products x 2 flops, the operand tiles loaded
   once; each element grows by 32 · 2^-20 an instruction */
__attribute__((target("amx-tile,amx-bf16"))) static float loop_amx(int64_t iters) {
    static const uint16_t ones[16 * 32] __attribute__((aligned(64))) = {[0 ... 16 * 32 - 1] = 0x3a80};
    float out[16 * 16] __attribute__((aligned(64)));
    struct amx_state saved;
    amx_tiles_on(&saved);
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t n = 0; n < iters; n++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    __asm__ volatile("" ::: "memory"); /* the tile store is an asm without a memory operand */
    amx_tiles_restore(&saved);
    return out[0] + out[255];
}
#endif

static void *peak_thread(void *arg) {
    struct peak_job *job = arg;
    int go;
    while ((go = atomic_load(job->go)) == 0) {
    }
    if (go < 0) return 0;
    const double t0 = seconds(CLOCK_THREAD_CPUTIME_ID);
    job->sink = job->loop(job->iters);
    job->cpu_seconds = seconds(CLOCK_THREAD_CPUTIME_ID) - t0;
    return 0;
}

/*
 * Runs `iters` rounds of the loop on each of `threads` threads (kind 0: f32 FMA, 1: bf16 dot or tiles).
 * out[0]: floating-point operations done in all, out[1]: wall seconds from the common start to the last
 * thread's end, out[2]: the accumulators' sum (finite), out[3]: the sum over threads of each one's flops
 * per second of its own CPU time (what the cores do while they run the loop, whatever else the machine
 * runs), out[4]: the instruction set's level (steerlm_isa: 1 AVX2, 2 AVX-512; 3 AMX for bf16's tiles). out[0] = 0 where the CPU
 * lacks the instructions.
 */
void steerlm_peak(int kind, int threads, int64_t iters, double out[5]) {
    out[0] = out[1] = out[2] = out[3] = out[4] = 0;
    if (threads < 1 || threads > 1024 || iters < 1) return;
    /* the loop and its flops per iteration: lanes × accumulators × flops a lane (AMX: tiles × 16 × 16 lanes ×
       32 products × 2 flops) */
    float (*loop)(int64_t) = 0;
    double flops_per_iter = 0;
    int level = steerlm_isa(); /* what out[4] reports */
#ifdef HAVE_AMX
    if (kind == 1 && steerlm_have_amx()) {
        loop = loop_amx;
        flops_per_iter = 4 * 16 * 16 * 32 * 2.0;
        level = ISA_AMX;
    }
#endif
#ifdef HAVE_X86
    if (loop) {
        /* the tiles */
    } else if (kind == 1 ? steerlm_have_bf16() : steerlm_have_avx512()) {
        loop = kind == 1 ? loop_bf16 : loop_f32;
        flops_per_iter = ACC * 16 * (kind == 1 ? 4.0 : 2.0);
        level = ISA_AVX512;
    } else if (kind == 0 && steerlm_have_avx2()) {
        loop = loop_f32_avx2;
        flops_per_iter = ACC2 * 8 * 2.0;
    }
#endif
    if (!loop) return;
    struct peak_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    atomic_int go = 0;
    int started = 0;
    if (jobs && ids) {
        for (; started < threads; started++) {
            jobs[started] = (struct peak_job){loop, iters, &go, 0, 0};
            if (pthread_create(&ids[started], 0, peak_thread, &jobs[started]) != 0) break;
        }
    }
    const double t0 = seconds(CLOCK_MONOTONIC);
    atomic_store(&go, started == threads ? 1 : -1);
    double sink = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(ids[i], 0);
        sink += jobs[i].sink;
    }
    const double wall = seconds(CLOCK_MONOTONIC) - t0;
    if (started == threads) {
        const double per_thread = (double)iters * flops_per_iter;
        out[0] = per_thread * threads;
        out[1] = wall;
        out[2] = sink;
        for (int i = 0; i < threads; i++) out[3] += per_thread / (jobs[i].cpu_seconds > 0 ? jobs[i].cpu_seconds : wall);
        out[4] = level;
    }
    free(jobs);
    free(ids);
}
