/**
 * The machine's arithmetic peak (native/peak.c): register-only multiply-add loops on N threads started
 * together, so that training throughput can be put against what the CPU can do at most (MFU).
 */
import { availableParallelism, cpus } from "node:os";
import { SteerlmError } from "../util/errors.js";
import { type Bound, declare } from "./ffi.js";
import { ISA_LEVEL, loadKernels } from "./native-kernels.js";

const PEAK_DECLS = ["void steerlm_peak(int kind, int threads, int64_t iters, _Out_ double *out)"] as const;

/**
 * The instructions each precision's loop runs, by the ISA level native/peak.c reports: the ones steerlm's
 * GEMMs (native/gemm_amx.c, gemm_avx512.c, gemm_avx2.c) use on this CPU.
 */
const PEAK_ISA: Record<"f32" | "bf16", Readonly<Record<number, string>>> = {
  f32: {
    [ISA_LEVEL.avx512]: "AVX-512F vfmadd231ps (zmm, 16 lanes × 2 flops)",
    [ISA_LEVEL.avx2]: "AVX2 vfmadd231ps (ymm, 8 lanes × 2 flops)",
  },
  bf16: {
    [ISA_LEVEL.amx]: "AMX-BF16 tdpbf16ps (16 × 16 tile, 32 products a lane × 2 flops)",
    [ISA_LEVEL.avx512]: "AVX512_BF16 vdpbf16ps (zmm, 16 lanes × 2 products × 2 flops)",
  },
};
export type PeakPrecision = keyof typeof PEAK_ISA;

function isaName(precision: PeakPrecision, level: number): string {
  const names: Partial<Record<number, string>> = PEAK_ISA[precision];
  const name = names[level];
  if (name === undefined)
    throw new SteerlmError(`peak probe ${precision}: unknown instruction set level ${level}`);
  return name;
}

/** One precision on `threads` threads, best of the timed runs; null where the CPU lacks the instructions. */
export interface PeakMeasure {
  precision: PeakPrecision;
  threads: number;
  /** The instructions measured (those the GEMMs run); null where the CPU has none for this precision. */
  isa: string | null;
  /** GFLOP/s over each thread's own CPU time, summed over threads: the cores' peak, whatever else runs. */
  gflops: number | null;
  /** GFLOP/s over wall time: what the cores gave this process; below `gflops` on a loaded machine. */
  wall_gflops: number | null;
}

let peakFn: Bound<typeof PEAK_DECLS> | undefined;

function peakFns(): Bound<typeof PEAK_DECLS> {
  if (peakFn) return peakFn;
  const k = loadKernels();
  if (!k) {
    throw new SteerlmError(
      "the peak probe needs steerlm's native kernels (build/native/libsteerlm-kernels.so), which are not built",
      "build them: `npm run build:native`",
    );
  }
  try {
    peakFn = declare(k.lib, PEAK_DECLS);
  } catch (err) {
    throw new SteerlmError(
      `${k.path} has no peak probe (${err instanceof Error ? err.message : String(err)})`,
      "rebuild it: `npm run build:native`",
    );
  }
  return peakFn;
}

/**
 * One run: flops, wall seconds, flops per CPU-second summed over threads and the instructions run; null
 * without them.
 */
function run(
  precision: PeakPrecision,
  threads: number,
  iters: number,
): { flops: number; wall: number; cpuRate: number; isa: string } | null {
  const out = new Float64Array(5);
  peakFns().steerlm_peak(precision === "bf16" ? 1 : 0, threads, iters, out);
  const [flops = 0, wall = 0, sum = 0, cpuRate = 0, level = 0] = out;
  if (flops === 0) return null;
  if (!Number.isFinite(sum)) throw new SteerlmError(`peak probe ${precision}: its accumulators overflowed`);
  return { flops, wall, cpuRate, isa: isaName(precision, level) };
}

/**
 * Measures `precision`'s peak on `threads` threads: a calibration run sizes each timed run to about
 * `seconds`, and the best of `repeats` is kept (other load on the machine only ever slows a run down).
 */
export function measurePeak(
  precision: PeakPrecision,
  threads: number,
  opts: { seconds?: number; repeats?: number } = {},
): PeakMeasure {
  // short runs, many of them: on a shared machine a short run is more likely to hold its cores throughout
  const seconds = opts.seconds ?? 0.05;
  const repeats = opts.repeats ?? 9;
  const probe = run(precision, threads, 200_000);
  if (!probe) return { precision, threads, isa: null, gflops: null, wall_gflops: null };
  // the probe's CPU seconds a thread: its flops ÷ its summed per-thread rate
  const iters = Math.max(1, Math.round((200_000 * seconds * probe.cpuRate) / probe.flops));
  let best = 0;
  let bestWall = 0;
  for (let i = 0; i < repeats; i++) {
    const r = run(precision, threads, iters);
    if (!r) continue;
    best = Math.max(best, r.cpuRate / 1e9);
    bestWall = Math.max(bestWall, r.flops / r.wall / 1e9);
  }
  return { precision, threads, isa: probe.isa, gflops: best, wall_gflops: bestWall };
}

/** `npm run bench -- peak`: both precisions on one thread and on `threads`, in GFLOP/s. */
export interface PeakReport {
  cpu: string;
  threads: number;
  /** The instructions each figure was measured with; null where the CPU lacks them. */
  isa: { f32: string | null; bf16: string | null };
  f32_gflops: { per_core: number | null; total: number | null };
  bf16_gflops: { per_core: number | null; total: number | null };
}

export function peakReport(threads = availableParallelism()): PeakReport {
  const both = (p: PeakPrecision) => {
    const one = measurePeak(p, 1);
    const gflops = {
      per_core: one.gflops,
      total: threads === 1 ? one.gflops : measurePeak(p, threads).gflops,
    };
    return { isa: one.isa, gflops };
  };
  const f32 = both("f32");
  const bf16 = both("bf16");
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    threads,
    isa: { f32: f32.isa, bf16: bf16.isa },
    f32_gflops: f32.gflops,
    bf16_gflops: bf16.gflops,
  };
}
