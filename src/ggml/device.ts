import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { BackendPtr } from "./ffi.js";
import { CudaUnavailableError, loadCudaNative, type NativeCuda } from "./native-cuda.js";

/**
 * Where graphs run. "cpu" (the default) is what CI tests; "cuda" (device 0) or "cuda:N" uses ggml's CUDA
 * backend from @node-llama-cpp/linux-x64-cuda and fails with a CudaUnavailableError naming what is
 * missing; "auto" uses CUDA when it opens and the CPU otherwise.
 */
export type DeviceName = "cpu" | "cuda" | `cuda:${number}` | "auto";

export interface DeviceRequest {
  kind: "cpu" | "cuda" | "auto";
  /** CUDA device index. */
  index: number;
}

/** Parses a device name; `source` says where it came from, for the error message. */
export function parseDevice(value: string, source: string): DeviceRequest {
  const v = value.trim().toLowerCase();
  if (v === "cpu" || v === "auto") return { kind: v, index: 0 };
  const m = /^cuda(?::(\d+))?$/.exec(v);
  if (m) return { kind: "cuda", index: Number(m[1] ?? 0) };
  throw new SteerlmError(`${source}: unknown device "${value}"`, 'use "cpu", "cuda", "cuda:N" or "auto"');
}

/** The device asked for: the option, else STEERLM_DEVICE, else the CPU. */
export function requestedDevice(option?: DeviceName): DeviceRequest {
  if (option !== undefined) return parseDevice(option, "device");
  const env = process.env.STEERLM_DEVICE;
  if (env !== undefined && env.trim() !== "") return parseDevice(env, "STEERLM_DEVICE");
  return { kind: "cpu", index: 0 };
}

export interface OpenedCuda {
  native: NativeCuda;
  ptr: BackendPtr;
  index: number;
  /** e.g. "NVIDIA H100 80GB HBM3". */
  description: string;
  totalMemory: number;
}

/**
 * Opens CUDA device `req.index`, or returns null for "auto" when CUDA is unavailable (after one info line
 * saying why). `ggmlLog` runs `fn` and returns what ggml logged meanwhile (the reason CUDA found no device).
 */
export function openCuda(
  req: DeviceRequest,
  ggmlLog: <T>(fn: (lines: () => string[]) => T) => T,
): OpenedCuda | null {
  let native: NativeCuda;
  try {
    native = ggmlLog((lines) => loadCudaNative(lines));
  } catch (e) {
    if (!(e instanceof CudaUnavailableError)) throw e;
    if (req.kind === "auto") {
      log.info(`device auto: using the CPU (${e.message})`);
      return null;
    }
    throw new CudaUnavailableError(e.missing, `cannot use device "cuda": ${e.message}`, e.hint);
  }
  const { index } = req;
  if (index >= native.deviceCount) {
    throw new CudaUnavailableError(
      "device",
      `cannot use device "cuda:${index}": ${native.deviceCount} CUDA device(s) found`,
      "CUDA devices count from 0",
    );
  }
  const desc = new Uint8Array(256);
  native.cuda.ggml_backend_cuda_get_device_description(index, desc, desc.length);
  const end = desc.indexOf(0);
  const description = new TextDecoder().decode(desc.subarray(0, end < 0 ? desc.length : end));
  const free = new BigUint64Array(1);
  const total = new BigUint64Array(1);
  native.cuda.ggml_backend_cuda_get_device_memory(index, free, total);
  const ptr = native.cuda.ggml_backend_cuda_init(index);
  if (!ptr) {
    const why = `ggml_backend_cuda_init(${index}) failed on ${description}`;
    if (req.kind !== "auto") throw new SteerlmError(why, "see the ggml lines above (--verbose)");
    log.info(`device auto: using the CPU (${why})`);
    return null;
  }
  return { native, ptr, index, description, totalMemory: Number(total[0]) };
}
