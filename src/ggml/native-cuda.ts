/**
 * ggml's CUDA backend (opt-in): nothing here runs unless a Backend asks for device "cuda" or "auto", so the
 * CPU path never loads or declares a CUDA library. See native.ts for the rules.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import koffi, { type LibraryHandle } from "koffi";
import { SteerlmError } from "../util/errors.js";
import { type Bound, declare } from "./ffi.js";
import { type GpuCode, gpuCodeVerdict, readGpuCode } from "./gpu-code.js";
import { loadNative, packageDir } from "./native.js";

/**
 * Why the CUDA backend could not be opened: the package, the NVIDIA driver, the CUDA runtime, a device, or GPU
 * code in the library that the devices cannot run with this driver.
 */
export type CudaMissing = "package" | "driver" | "runtime" | "device" | "gpu-code";

export class CudaUnavailableError extends SteerlmError {
  override name = "CudaUnavailableError";
  constructor(
    readonly missing: CudaMissing,
    message: string,
    hint?: string,
  ) {
    super(message, hint);
  }
}

const CUDA_DECLS = [
  "int ggml_backend_cuda_get_device_count()",
  // outputs as void *: koffi passes a typed array's own memory
  "void ggml_backend_cuda_get_device_description(int device, void *description, size_t size)",
  "void ggml_backend_cuda_get_device_memory(int device, void *free, void *total)",
  "ggml_backend * ggml_backend_cuda_init(int device)",
] as const;

/** The CUDA driver API (cuda.h), for what the driver is and what its devices run, before ggml touches them. */
const DRIVER_DECLS = [
  "int cuInit(uint32_t flags)",
  // outputs as void *: an Int32Array's own memory
  "int cuDriverGetVersion(void *version)",
  "int cuDeviceGetCount(void *count)",
  "int cuDeviceGetAttribute(void *value, int attribute, int device)",
] as const;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

/** The driver's CUDA version (13000 = 13.0) and each device's compute capability (90 = 9.0); null: unknown. */
interface DriverInfo {
  version: number;
  capabilities: number[];
}

function driverInfo(libcuda: LibraryHandle): DriverInfo | null {
  let cu: Bound<typeof DRIVER_DECLS>;
  try {
    cu = declare(libcuda, DRIVER_DECLS);
  } catch {
    return null; // a libcuda.so.1 without the driver API (a stand-in): nothing to check against
  }
  const out = new Int32Array(2);
  if (cu.cuInit(0) !== 0 || cu.cuDriverGetVersion(out) !== 0) return null;
  const version = out[0] ?? 0;
  if (cu.cuDeviceGetCount(out) !== 0) return null;
  const capabilities: number[] = [];
  for (let d = 0; d < (out[0] ?? 0); d++) {
    const major = out.subarray(0, 1);
    const minor = out.subarray(1, 2);
    if (
      cu.cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d) !== 0 ||
      cu.cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d) !== 0
    )
      return null;
    capabilities.push((major[0] ?? 0) * 10 + (minor[0] ?? 0));
  }
  return { version, capabilities };
}

/**
 * Why `library` cannot run on every device (null: it can, or the check is off or impossible). ggml aborts
 * the process when a kernel cannot load, so this is decided from the file before any kernel runs.
 * STEERLM_CUDA_CODE_CHECK=0 skips it (for a library whose GPU code this reader misjudges).
 */
function gpuCodeProblem(library: string, driver: DriverInfo | null): string | null {
  if (!driver || process.env.STEERLM_CUDA_CODE_CHECK === "0") return null;
  let code: GpuCode;
  try {
    code = readGpuCode(library);
  } catch {
    return null; // not readable as a fat binary: leave the verdict to ggml
  }
  for (const [d, capability] of driver.capabilities.entries()) {
    const v = gpuCodeVerdict(code, capability, driver.version);
    if (v.runs === null)
      return `${library} cannot run on device ${d} (compute capability ${Math.floor(capability / 10)}.${capability % 10}): ${v.why}`;
  }
  return null;
}

/** libggml-base functions only a non-CPU backend needs (declared here so that the CPU path never binds them). */
const DEVICE_BASE_DECLS = [
  "bool ggml_backend_supports_op(ggml_backend *backend, ggml_tensor *op)",
  "const char * ggml_op_desc(ggml_tensor *t)",
] as const;

export interface NativeCuda {
  cuda: Bound<typeof CUDA_DECLS>;
  base: Bound<typeof DEVICE_BASE_DECLS>;
  /** The libggml-cuda.so that loaded (node-llama-cpp's CUDA 13 build, or its CUDA 12 fallback). */
  library: string;
  deviceCount: number;
  /** Runtime libraries preloaded from STEERLM_CUDA_LIB_DIR or a CUDA toolkit folder. */
  preloaded: string[];
}

/**
 * The two builds node-llama-cpp ships, in the order it tries them: @node-llama-cpp/linux-x64-cuda (CUDA 13:
 * libcudart.so.13, libcublas.so.13) and the CUDA 12 "fallback" in @node-llama-cpp/linux-x64-cuda-ext.
 * STEERLM_GGML_CUDA_DIR names one folder holding libggml-cuda.so instead.
 */
function cudaCandidates(): string[] {
  const forced = process.env.STEERLM_GGML_CUDA_DIR;
  if (forced) return [join(forced, "libggml-cuda.so")].filter((p) => existsSync(p));
  const out: string[] = [];
  const main = packageDir("@node-llama-cpp/linux-x64-cuda");
  if (main) out.push(join(main, "bins", "linux-x64-cuda", "libggml-cuda.so"));
  const ext = packageDir("@node-llama-cpp/linux-x64-cuda-ext");
  if (ext) out.push(join(ext, "bins", "linux-x64-cuda", "fallback", "libggml-cuda.so"));
  return out.filter((p) => existsSync(p));
}

/** The runtime libraries a libggml-cuda.so needs besides the driver, by CUDA major version. */
const CUDA_RUNTIME_LIBS = (major: number) => [
  `libcudart.so.${major}`,
  `libcublasLt.so.${major}`,
  `libcublas.so.${major}`,
];

/**
 * Folders searched for the CUDA runtime: STEERLM_CUDA_LIB_DIR (colon-separated), then the usual toolkit
 * folders. The dynamic loader's own path (LD_LIBRARY_PATH, ld.so.conf) is always tried as well: a library
 * preloaded here by full path satisfies libggml-cuda.so's dependency on its soname.
 */
function cudaLibDirs(): string[] {
  const env = (process.env.STEERLM_CUDA_LIB_DIR ?? "").split(":").filter(Boolean);
  const toolkits = ["/usr/local/cuda"];
  try {
    for (const d of readdirSync("/usr/local").sort().reverse())
      if (d.startsWith("cuda-")) toolkits.push(join("/usr/local", d));
  } catch {
    // no /usr/local: nothing to add
  }
  const std = toolkits.flatMap((t) => [
    join(t, "lib64"),
    join(t, "lib"),
    join(t, "targets/x86_64-linux/lib"),
  ]);
  return [...env, ...std].filter((d) => existsSync(d));
}

function loadError(e: unknown): string {
  return e instanceof Error ? e.message.replace(/^Failed to load shared library: /, "") : String(e);
}

let cudaLoaded: NativeCuda | undefined;
// every library opened for CUDA stays referenced: ggml's function tables point into them
const cudaHandles: LibraryHandle[] = [];

/**
 * Opens ggml's CUDA backend library: checks for the package, then the driver (libcuda.so.1), preloads the
 * CUDA runtime it needs, dlopens libggml-cuda.so (which binds to the libggml-base.so already loaded by
 * loadNative, same soname, same file) and counts devices. `ggmlLog` returns what ggml logged meanwhile, for
 * the error message. Throws CudaUnavailableError naming what is missing. Never called on the CPU path.
 */
export function loadCudaNative(ggmlLog: () => string[] = () => []): NativeCuda {
  if (cudaLoaded) return cudaLoaded;
  // a process does not gain a driver or a GPU while it runs: answer a repeated question from the cache
  const key = `${process.env.STEERLM_GGML_CUDA_DIR ?? ""}|${process.env.STEERLM_CUDA_LIB_DIR ?? ""}`;
  const known = cudaFailures.get(key);
  if (known) throw known;
  try {
    cudaLoaded = openCuda(ggmlLog);
    return cudaLoaded;
  } catch (e) {
    if (e instanceof CudaUnavailableError) cudaFailures.set(key, e);
    throw e;
  }
}
const cudaFailures = new Map<string, CudaUnavailableError>();

function openCuda(ggmlLog: () => string[]): NativeCuda {
  const n = loadNative(); // libggml-base first: libggml-cuda.so must bind to this very copy
  const candidates = cudaCandidates();
  if (candidates.length === 0) {
    throw new CudaUnavailableError(
      "package",
      process.env.STEERLM_GGML_CUDA_DIR
        ? `CUDA backend not found: no libggml-cuda.so in STEERLM_GGML_CUDA_DIR=${process.env.STEERLM_GGML_CUDA_DIR}`
        : "CUDA backend not installed: @node-llama-cpp/linux-x64-cuda has no libggml-cuda.so",
      "install it with `npm install @node-llama-cpp/linux-x64-cuda@3.21.1`, or use STEERLM_DEVICE=cpu",
    );
  }
  let driver: DriverInfo | null;
  try {
    const libcuda = koffi.load("libcuda.so.1");
    cudaHandles.push(libcuda);
    driver = driverInfo(libcuda);
  } catch (e) {
    throw new CudaUnavailableError(
      "driver",
      `NVIDIA driver not found: libcuda.so.1 cannot be loaded (${loadError(e)})`,
      "install the NVIDIA driver (580 or newer for the CUDA 13 build), or use STEERLM_DEVICE=cpu",
    );
  }
  const failures: string[] = [];
  const noDevice: string[] = [];
  const cannotRun: string[] = [];
  for (const library of candidates) {
    const problem = gpuCodeProblem(library, driver);
    if (problem) {
      cannotRun.push(problem);
      continue;
    }
    const major = library.includes("fallback") ? 12 : 13;
    const preloaded: string[] = [];
    for (const name of CUDA_RUNTIME_LIBS(major)) {
      const path = cudaLibDirs()
        .map((d) => join(d, name))
        .find((p) => existsSync(p));
      if (!path) continue; // the dynamic loader may still find it on its own path
      try {
        cudaHandles.push(koffi.load(path));
        preloaded.push(path);
      } catch (e) {
        failures.push(`${path}: ${loadError(e)}`);
      }
    }
    let lib: LibraryHandle;
    try {
      lib = koffi.load(library);
      cudaHandles.push(lib);
    } catch (e) {
      failures.push(`${library}: ${loadError(e)}`);
      continue;
    }
    const cuda = declare(lib, CUDA_DECLS);
    const deviceCount = cuda.ggml_backend_cuda_get_device_count();
    if (deviceCount < 1) {
      // e.g. a driver too old for this build's runtime: the next build (CUDA 12) may still work
      noDevice.push(library);
      continue;
    }
    const baseLib = koffi.load(join(n.binDir, "libggml-base.so"));
    cudaHandles.push(baseLib);
    const base = declare(baseLib, DEVICE_BASE_DECLS);
    return { cuda, base, library, deviceCount, preloaded };
  }
  if (cannotRun.length > 0 && failures.length === 0 && noDevice.length === 0) {
    throw new CudaUnavailableError(
      "gpu-code",
      cannotRun.join("; "),
      "update the NVIDIA driver to one whose CUDA version the message names, or build node-llama-cpp's CUDA " +
        "backend for this GPU from source (`npx node-llama-cpp source build --gpu cuda`) and point " +
        "STEERLM_GGML_CUDA_DIR at its folder; or use STEERLM_DEVICE=cpu",
    );
  }
  if (noDevice.length > 0) {
    const said = [...new Set(ggmlLog().filter((l) => /cuda/i.test(l)))];
    throw new CudaUnavailableError(
      "device",
      `no CUDA device: ${noDevice.join(" and ")} loaded but found 0 devices${said.length ? ` (${said.join("; ")})` : ""}`,
      "check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use STEERLM_DEVICE=cpu",
    );
  }
  const missing = [...new Set(failures.join("\n").match(/lib[\w.+-]+\.so[.\d]*(?=: cannot open)/g) ?? [])];
  throw new CudaUnavailableError(
    "runtime",
    `CUDA runtime libraries not found${missing.length ? `: ${missing.join(", ")}` : ""} (${[...failures, ...cannotRun].join("; ")})`,
    "install the CUDA runtime and cuBLAS (CUDA 13, or 12 for the fallback build) or point STEERLM_CUDA_LIB_DIR at the folder that holds them; or use STEERLM_DEVICE=cpu",
  );
}
