/**
 * The code paths a kernel test runs, by the name it reports: the best this CPU has, the AVX-512 variant (a
 * CPU without AMX), the AVX2 variant (a CPU without AVX-512), the portable C (a CPU without AVX2: scalar loops, ggml's GEMMs), and no kernel
 * library at all (plain ggml ops). A CPU runs a capped mode on its own best paths where it lacks the
 * instructions (an AVX2 machine's "kernels" are its "AVX2 kernels").
 */
import { existsSync, readFileSync } from "node:fs";
import { setKernelsModeForTesting } from "../src/ggml/native-kernels.js";

const KERNEL_MODES = {
  kernels: "native",
  "AVX-512 kernels": "avx512",
  "AVX2 kernels": "avx2",
  "portable kernels": "generic",
  "ggml fallback": "off",
} as const;
export type KernelMode = keyof typeof KERNEL_MODES;
/** Every path but "AVX-512 kernels", which differs from "kernels" only in the GEMMs with a bf16 a (AMX): their tests ask for it. */
export const ALL_KERNEL_MODES = (Object.keys(KERNEL_MODES) as KernelMode[]).filter(
  (m) => m !== "AVX-512 kernels",
);

/** Graphs built from now on use `mode`'s code paths. */
export function useKernels(mode: KernelMode): void {
  setKernelsModeForTesting(KERNEL_MODES[mode]);
}

/**
 * Whether this CPU has what steerlm's AVX-512-only kernels (attention, the norms with a gain) need, AVX-512 F and
 * BW, read from /proc/cpuinfo: where it does, their tests must find them; elsewhere they say so and run nothing.
 */
const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
export const CPU_HAS_AVX512 = /\bavx512f\b/.test(cpuinfo) && /\bavx512bw\b/.test(cpuinfo);
