import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { driverForPtxIsa, type GpuCode, gpuCodeVerdict, readGpuCode } from "./gpu-code.js";
import { packageDir } from "./native.js";

const cudaDir = packageDir("@node-llama-cpp/linux-x64-cuda");
const cuda13 = cudaDir ? join(cudaDir, "bins", "linux-x64-cuda", "libggml-cuda.so") : "";
const extDir = packageDir("@node-llama-cpp/linux-x64-cuda-ext");
const cuda12 = extDir ? join(extDir, "bins", "linux-x64-cuda", "fallback", "libggml-cuda.so") : "";
const have = existsSync(cuda13) && existsSync(cuda12);
if (!have)
  process.stderr.write(
    "\n*** node-llama-cpp's CUDA packages are not installed: the fatbin reader test is SKIPPED ***\n",
  );

describe("PTX ISA → the CUDA version whose driver compiles it", () => {
  it.each([
    [90, 13000],
    [91, 13010],
    [84, 12040],
    [78, 11080],
  ])("ISA %i needs %i", (isa, driver) => expect(driverForPtxIsa(isa)).toBe(driver));
});

describe.skipIf(!have)("the GPU code in node-llama-cpp 3.21.1's CUDA libraries", () => {
  it("CUDA 13 build: SASS sm_86/89/120/121, PTX compute_75/80/90 in ISA 9.1", () => {
    expect(readGpuCode(cuda13)).toEqual({
      sass: [86, 89, 120, 121],
      ptx: [75, 80, 90].map((arch) => ({ arch, isa: 91 })),
    });
  });
  it("CUDA 12 fallback: SASS sm_86, PTX compute_50..80 in ISA 8.4", () => {
    expect(readGpuCode(cuda12)).toEqual({
      sass: [86],
      ptx: [50, 61, 70, 75, 80].map((arch) => ({ arch, isa: 84 })),
    });
  });
});

describe("which GPUs run which code under which driver", () => {
  const cuda13Code: GpuCode = {
    sass: [86, 89, 120, 121],
    ptx: [75, 80, 90].map((arch) => ({ arch, isa: 91 })),
  };
  const cuda12Code: GpuCode = { sass: [86], ptx: [50, 61, 70, 75, 80].map((arch) => ({ arch, isa: 84 })) };
  it("an H100/H200 (9.0) with a 580.x driver (CUDA 13.0) cannot run the CUDA 13 build: the reason is named", () => {
    const v = gpuCodeVerdict(cuda13Code, 90, 13000);
    expect(v.runs).toBeNull();
    expect(v.why).toBe(
      "it has machine code for sm_86, sm_89, sm_120, sm_121, and its PTX (ISA 9.1) needs a CUDA 13.1 " +
        "driver, this one is CUDA 13.0",
    );
  });
  it("the same GPU with a CUDA 13.1 driver compiles the PTX", () => {
    expect(gpuCodeVerdict(cuda13Code, 90, 13010).runs).toBe("ptx");
  });
  it("an RTX 4090 (8.9) and an A10 (8.6) run their own SASS with any driver; an A100 (8.0) runs none", () => {
    expect(gpuCodeVerdict(cuda13Code, 89, 13000).runs).toBe("sass");
    expect(gpuCodeVerdict(cuda13Code, 86, 13000).runs).toBe("sass");
    expect(gpuCodeVerdict(cuda13Code, 80, 13000).runs).toBeNull();
  });
  it("SASS of a newer minor architecture does not run on an older one (sm_89 on 8.7)", () => {
    expect(gpuCodeVerdict({ sass: [89], ptx: [] }, 87, 13000)).toEqual({
      runs: null,
      why: "it has machine code for sm_89 and no PTX for compute capability 8.7 or below",
    });
  });
  it("the CUDA 12 fallback's compute_80 PTX runs on Hopper under a CUDA 12.4+ driver", () => {
    expect(gpuCodeVerdict(cuda12Code, 90, 13000).runs).toBe("ptx");
    expect(gpuCodeVerdict(cuda12Code, 90, 12020).runs).toBeNull();
  });
});
