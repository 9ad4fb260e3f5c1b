import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import koffi from "koffi";
import { afterEach, describe, expect, it } from "vitest";
import { SteerlmError } from "../util/errors.js";
import { type LogLevel, setLogSink } from "../util/log.js";
import { Backend } from "./backend.js";
import { parseDevice, requestedDevice } from "./device.js";
import { CudaUnavailableError } from "./native-cuda.js";

/** Whether this machine has an NVIDIA driver: decides which of the "cuda" outcomes below is expected. */
function driverPresent(): boolean {
  try {
    koffi.load("libcuda.so.1");
    return true;
  } catch {
    return false;
  }
}
const haveDriver = driverPresent();

const savedEnv = { ...process.env };
afterEach(() => {
  for (const k of ["STEERLM_DEVICE", "STEERLM_GGML_CUDA_DIR", "STEERLM_CUDA_LIB_DIR"]) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  setLogSink((level, text) => {
    process.stderr.write(level === "info" ? `${text}\n` : `[${level}] ${text}\n`);
  });
});

function captureLog(): Array<[LogLevel, string]> {
  const lines: Array<[LogLevel, string]> = [];
  setLogSink((level, text) => lines.push([level, text]));
  return lines;
}

function cudaError(fn: () => unknown): CudaUnavailableError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CudaUnavailableError) return e;
    throw e;
  }
  throw new Error("expected a CudaUnavailableError");
}

describe("device selection", () => {
  // first, before anything below tries CUDA (vitest runs each file in its own process)
  it("the CPU path loads no CUDA library, whatever the call form", () => {
    delete process.env.STEERLM_DEVICE;
    for (const b of [new Backend(1), new Backend(), new Backend({ threads: 1 }), new Backend(1, undefined)]) {
      expect(b.isCpu).toBe(true);
      expect(b.device).toBe("cpu");
      expect(b.info.name).toBe("CPU");
      expect(b.info.device).toBe("cpu");
      b.free();
    }
    process.env.STEERLM_DEVICE = "cpu";
    const b = new Backend(2);
    expect(b.info.threads).toBe(2);
    b.free();
    const maps = readFileSync("/proc/self/maps", "utf8");
    expect(maps).not.toMatch(/libggml-cuda|libcudart|libcublas|libcuda\.so/);
  });

  it("parses device names from the option, then STEERLM_DEVICE, defaulting to the CPU", () => {
    expect(parseDevice("cuda", "x")).toEqual({ kind: "cuda", index: 0 });
    expect(parseDevice(" CUDA:3 ", "x")).toEqual({ kind: "cuda", index: 3 });
    expect(parseDevice("auto", "x")).toEqual({ kind: "auto", index: 0 });
    delete process.env.STEERLM_DEVICE;
    expect(requestedDevice()).toEqual({ kind: "cpu", index: 0 });
    process.env.STEERLM_DEVICE = "auto";
    expect(requestedDevice()).toEqual({ kind: "auto", index: 0 });
    expect(requestedDevice("cpu")).toEqual({ kind: "cpu", index: 0 });
    process.env.STEERLM_DEVICE = "gpu";
    expect(() => requestedDevice()).toThrow(/STEERLM_DEVICE: unknown device "gpu"/);
    expect(() => new Backend(1)).toThrow(SteerlmError);
  });

  it("names a missing CUDA package; auto falls back to the CPU with one info line", () => {
    const empty = mkdtempSync(join(tmpdir(), "steerlm-nocuda-"));
    try {
      process.env.STEERLM_GGML_CUDA_DIR = empty;
      const e = cudaError(() => new Backend({ device: "cuda" }));
      expect(e.missing).toBe("package");
      expect(e.message).toContain('cannot use device "cuda"');
      expect(e.message).toContain(`no libggml-cuda.so in STEERLM_GGML_CUDA_DIR=${empty}`);
      const lines = captureLog();
      process.env.STEERLM_DEVICE = "auto";
      const b = new Backend(1);
      expect(b.isCpu).toBe(true);
      expect(b.info.threads).toBe(1);
      b.free();
      // only info lines: STEERLM_LOG=debug adds ggml's own
      expect(lines.filter(([level]) => level === "info")).toEqual([
        ["info", expect.stringMatching(/^device auto: using the CPU \(.*libggml-cuda\.so/)],
      ]);
    } finally {
      rmSync(empty, { recursive: true });
    }
  });

  it.skipIf(haveDriver)("without an NVIDIA driver: cuda names libcuda.so.1, auto uses the CPU", () => {
    const e = cudaError(() => new Backend({ device: "cuda", threads: 1 }));
    expect(e.missing).toBe("driver");
    expect(e.message).toMatch(/^cannot use device "cuda": NVIDIA driver not found: libcuda\.so\.1/);
    expect(e.hint).toMatch(/STEERLM_DEVICE=cpu/);
    const lines = captureLog();
    const b = new Backend({ device: "auto", threads: 1 });
    expect(b.device).toBe("cpu");
    b.free();
    const info = lines.filter(([level]) => level === "info");
    expect(info).toHaveLength(1);
    expect(info[0]?.[1]).toMatch(/^device auto: using the CPU \(NVIDIA driver not found: libcuda\.so\.1/);
  });

  it.skipIf(!haveDriver)("with an NVIDIA driver: cuda opens a device or names what is missing", () => {
    try {
      const b = new Backend({ device: "cuda" });
      expect(b.device).toBe("cuda");
      expect(b.isCpu).toBe(false);
      expect(b.info.name).toMatch(/^CUDA\d+$/);
      b.free();
    } catch (e) {
      expect(e).toBeInstanceOf(CudaUnavailableError);
      expect(["runtime", "device"]).toContain((e as CudaUnavailableError).missing);
    }
  });
});

/**
 * Past the driver check: a stand-in libcuda.so.1 (an empty library) on LD_LIBRARY_PATH lets the loader
 * go on to the CUDA runtime, which this machine may lack. Runs in a child process because the dynamic
 * loader reads LD_LIBRARY_PATH at start.
 */
const cc = spawnSync("cc", ["--version"]).status === 0;
describe.skipIf(haveDriver || !cc)("CUDA loader past a (stand-in) driver", () => {
  it("reports the missing runtime library by name, or a missing device", () => {
    const dir = mkdtempSync(join(tmpdir(), "steerlm-fakecuda-"));
    try {
      writeFileSync(join(dir, "empty.c"), "int steerlm_not_a_driver;\n");
      const built = spawnSync("cc", [
        "-shared",
        "-fPIC",
        "-o",
        join(dir, "libcuda.so.1"),
        join(dir, "empty.c"),
      ]);
      expect(built.status, String(built.stderr)).toBe(0);
      const script = [
        `import { Backend } from ${JSON.stringify(new URL("./backend.ts", import.meta.url).pathname)};`,
        "try { new Backend({ device: 'cuda' }); console.log(JSON.stringify({ opened: true })); }",
        "catch (e) { console.log(JSON.stringify({ missing: e.missing, message: e.message })); }",
      ].join("\n");
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        encoding: "utf8",
        env: { ...process.env, LD_LIBRARY_PATH: dir, STEERLM_DEVICE: "" },
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split("\n").pop() as string) as {
        missing?: string;
        message?: string;
      };
      expect(["runtime", "device"]).toContain(out.missing);
      if (out.missing === "runtime")
        expect(out.message).toMatch(/CUDA runtime libraries not found: lib\w+\.so\.\d+/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
