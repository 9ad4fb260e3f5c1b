import { closeSync, openSync, readSync } from "node:fs";

/**
 * Which GPU code a CUDA library carries, read from its ELF `.nv_fatbin` section: machine code (SASS) per
 * architecture, and PTX per virtual architecture with the PTX ISA it is written in. A GPU of compute capability
 * X.Y runs a library that has SASS for X.Z with Z ≤ Y, or else PTX for an architecture ≤ X.Y that its driver can
 * compile: a driver compiles PTX up to the ISA of its own CUDA version (ISA 9.0 = CUDA 13.0, 9.1 = 13.1,
 * 8.4 = 12.4). Why this is checked before ggml runs a kernel: node-llama-cpp 3.21.1's CUDA 13 build has SASS for
 * sm_86/89/120/121 only and PTX 9.1, so on a Hopper GPU (9.0) with a 580.x driver (CUDA 13.0) ggml aborts the
 * whole process at its first kernel ("the provided PTX was compiled with an unsupported toolchain").
 */
export interface GpuCode {
  /** SASS architectures, e.g. 86 for sm_86. */
  sass: number[];
  /** PTX entries: virtual architecture (90 = compute_90) and ISA (major·10 + minor: 91 = 9.1). */
  ptx: Array<{ arch: number; isa: number }>;
}

const FATBIN_MAGIC = 0xba55ed50;
const ENTRY_PTX = 1;
const ENTRY_SASS = 2;

/** The file offset and size of an ELF64 file's `.nv_fatbin` section, or null when it has none. */
export function fatbinSection(
  read: (pos: number, n: number) => Buffer,
): { off: number; size: number } | null {
  const eh = read(0, 64);
  if (eh.readUInt32LE(0) !== 0x464c457f || eh[4] !== 2) throw new Error("not a 64-bit ELF file");
  const shoff = Number(eh.readBigUInt64LE(0x28));
  const shentsize = eh.readUInt16LE(0x3a);
  const shnum = eh.readUInt16LE(0x3c);
  const sh = read(shoff, shentsize * shnum);
  const names = Number(sh.readBigUInt64LE(eh.readUInt16LE(0x3e) * shentsize + 0x18));
  for (let i = 0; i < shnum; i++) {
    const h = i * shentsize;
    if (read(names + sh.readUInt32LE(h), 11).toString("latin1") === ".nv_fatbin\0")
      return { off: Number(sh.readBigUInt64LE(h + 0x18)), size: Number(sh.readBigUInt64LE(h + 0x20)) };
  }
  return null;
}

/** Reads only headers: a 160 MB library costs a few hundred small reads. */
export function readGpuCode(path: string): GpuCode {
  const fd = openSync(path, "r");
  const read = (pos: number, n: number) => {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, pos);
    return b;
  };
  try {
    const section = fatbinSection(read);
    if (!section) throw new Error("no .nv_fatbin section (no GPU code)");
    const sass = new Set<number>();
    const ptx = new Map<number, { arch: number; isa: number }>();
    const end = section.off + section.size;
    for (let o = section.off; o + 16 <= end; ) {
      const c = read(o, 16);
      if (c.readUInt32LE(0) !== FATBIN_MAGIC) break;
      const body = o + c.readUInt16LE(6);
      const bodyEnd = body + Number(c.readBigUInt64LE(8));
      for (let e = body; e < bodyEnd; ) {
        const h = read(e, 32);
        const arch = h.readUInt32LE(28);
        if (h.readUInt16LE(0) === ENTRY_SASS) sass.add(arch);
        if (h.readUInt16LE(0) === ENTRY_PTX)
          ptx.set(arch * 1000 + h.readUInt16LE(26) * 10 + h.readUInt16LE(24), {
            arch,
            isa: h.readUInt16LE(26) * 10 + h.readUInt16LE(24),
          });
        e += h.readUInt32LE(4) + Number(h.readBigUInt64LE(8));
      }
      o = bodyEnd;
    }
    return { sass: [...sass].sort((a, b) => a - b), ptx: [...ptx.values()].sort((a, b) => a.arch - b.arch) };
  } catch (e) {
    throw new Error(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    closeSync(fd);
  }
}

/** The CUDA version (as cuDriverGetVersion reports it: 13010 = 13.1) whose driver compiles PTX ISA `isa`. */
export function driverForPtxIsa(isa: number): number {
  return (Math.floor(isa / 10) + 4) * 1000 + (isa % 10) * 10;
}

const cc = (v: number) => `${Math.floor(v / 10)}.${v % 10}`;
const cuda = (v: number) => `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;

/**
 * How a GPU of compute capability `capability` (90 = 9.0) runs `code` under a driver of CUDA version
 * `driver`: its own SASS, PTX the driver compiles, or not at all (null, with the reason in words).
 */
export function gpuCodeVerdict(
  code: GpuCode,
  capability: number,
  driver: number,
): { runs: "sass" | "ptx"; why?: undefined } | { runs: null; why: string } {
  const major = Math.floor(capability / 10);
  if (code.sass.some((a) => Math.floor(a / 10) === major && a <= capability)) return { runs: "sass" };
  const usable = code.ptx.filter((p) => p.arch <= capability);
  if (usable.some((p) => driverForPtxIsa(p.isa) <= driver)) return { runs: "ptx" };
  const sass = code.sass.length
    ? `machine code for ${code.sass.map((a) => `sm_${a}`).join(", ")}`
    : "no machine code (SASS)";
  if (usable.length === 0)
    return { runs: null, why: `it has ${sass} and no PTX for compute capability ${cc(capability)} or below` };
  const need = Math.min(...usable.map((p) => driverForPtxIsa(p.isa)));
  return {
    runs: null,
    why:
      `it has ${sass}, and its PTX (ISA ${[...new Set(usable.map((p) => cc(p.isa)))].join(", ")}) needs a CUDA ${cuda(need)} ` +
      `driver, this one is CUDA ${cuda(driver)}`,
  };
}
