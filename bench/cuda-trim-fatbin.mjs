#!/usr/bin/env node
// Writes a copy of a CUDA shared library whose embedded GPU code keeps only the entries one GPU family
// needs, so that it travels to a GPU machine in one 64 MiB `run` call. Only for that transport: the
// copy is byte-identical outside the .nv_fatbin section, and inside it every fat-binary container stays
// at its offset (the host code points at each one); its entries are compacted and its size field
// shrunk, the freed tail zeroed (which compresses to nothing). A container without a wanted entry is
// left whole.
//
//   node bench/cuda-trim-fatbin.mjs <in.so> <out.so> [ptx:90,sass:90] [--ptx-isa 9.0]   (default: ptx:90)
//
// --ptx-isa V rewrites the `.version` line of every kept PTX entry to V (the entries are zstd-compressed:
// the system's `zstd` decompresses and recompresses them). node-llama-cpp 3.21.1's PTX says 9.1 (CUDA
// 13.1), which a CUDA 13.0 driver (580.x) refuses with "PTX was compiled with an unsupported toolchain"
// before compiling a line of it; declared as 9.0 the same text is compiled by that driver.
//
// node-llama-cpp 3.21.1's CUDA 13 libggml-cuda.so holds PTX for compute_75/80/90 and SASS for
// sm_86/89/120/121: an H100/H200 (sm_90) runs its compute_90 PTX, compiled by the driver at load time.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const args = process.argv.slice(2);
const isaAt = args.indexOf("--ptx-isa");
const ptxIsa = isaAt >= 0 ? args.splice(isaAt, 2)[1] : null;
if (isaAt >= 0 && !/^\d+\.\d+$/.test(ptxIsa ?? "")) throw new Error("--ptx-isa takes a version like 9.0");
const [input, output, spec = "ptx:90"] = args;
if (!input || !output) {
  console.error("usage: node bench/cuda-trim-fatbin.mjs <in.so> <out.so> [ptx:90,sass:90]");
  process.exit(2);
}
const KIND = { ptx: 1, sass: 2 };
const wanted = spec.split(",").map((s) => {
  const [k, a] = s.split(":");
  if (!(k in KIND) || !Number.isInteger(Number(a))) throw new Error(`bad entry spec ${s} (ptx:90, sass:90)`);
  return { kind: KIND[k], arch: Number(a) };
});

const buf = readFileSync(input);
const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
const u16 = (o) => dv.getUint16(o, true);
const u32 = (o) => dv.getUint32(o, true);
const u64 = (o) => Number(dv.getBigUint64(o, true));

// the .nv_fatbin section, found by the same reader steerlm's CUDA loader uses (npm run build first)
const { fatbinSection } = await import(new URL("../dist/ggml/gpu-code.js", import.meta.url).href);
const fatbin = fatbinSection((pos, n) => buf.subarray(pos, pos + n));
if (!fatbin) throw new Error(`${input}: no .nv_fatbin section`);

const FATBIN_MAGIC = 0xba55ed50;
const out = Buffer.from(buf);
const stats = {
  containers: 0,
  trimmed: 0,
  kept: 0,
  dropped: 0,
  bytesBefore: 0,
  bytesAfter: 0,
  isa: new Map(),
};
const ZSTD_MAGIC = 0xfd2fb528;

/** A PTX entry with its `.version` set to ptxIsa: header (sizes updated) + zstd payload padded to 8. */
function rewritePtx(at) {
  const hs = u32(at + 4);
  const csize = u32(at + 16);
  if (u32(at + hs) !== ZSTD_MAGIC) throw new Error(`PTX entry at ${at} is not zstd-compressed`);
  const text = execFileSync("zstd", ["-d", "-c", "-q"], {
    input: buf.subarray(at + hs, at + hs + csize),
    maxBuffer: 1 << 30,
  });
  const ptx = text.toString("latin1");
  const m = /^\.version (\d+\.\d+)$/m.exec(ptx);
  if (!m) throw new Error(`PTX entry at ${at} has no .version line`);
  stats.isa.set(m[1], (stats.isa.get(m[1]) ?? 0) + 1);
  const packed = execFileSync("zstd", ["-19", "-c", "-q"], {
    input: Buffer.from(ptx.replace(m[0], `.version ${ptxIsa}`), "latin1"),
    maxBuffer: 1 << 30,
  });
  const padded = Math.ceil(packed.length / 8) * 8;
  const entry = Buffer.alloc(hs + padded);
  buf.copy(entry, 0, at, at + hs);
  entry.writeBigUInt64LE(BigInt(padded), 8);
  entry.writeUInt32LE(packed.length, 16);
  // the entry header states the PTX ISA too (minor, major), which readers such as steerlm's loader check
  const [major, minor] = ptxIsa.split(".").map(Number);
  entry.writeUInt16LE(minor, 24);
  entry.writeUInt16LE(major, 26);
  packed.copy(entry, hs);
  return entry;
}
let o = fatbin.off;
const sectionEnd = fatbin.off + fatbin.size;
while (o + 16 <= sectionEnd && u32(o) === FATBIN_MAGIC) {
  const hsz = u16(o + 6);
  const fsz = u64(o + 8);
  const entries = [];
  for (let e = o + hsz; e < o + hsz + fsz; ) {
    const size = u32(e + 4) + u64(e + 8); // entry header + payload
    if (size % 8 !== 0) throw new Error(`entry at ${e} of ${size} bytes breaks 8-byte alignment`);
    entries.push({ at: e, size, kind: u16(e), arch: u32(e + 28) });
    e += size;
  }
  const keep = entries.filter((x) => wanted.some((w) => w.kind === x.kind && w.arch === x.arch));
  stats.containers++;
  stats.bytesBefore += fsz;
  if (keep.length === 0) {
    stats.bytesAfter += fsz;
  } else {
    let w = o + hsz;
    for (const x of keep) {
      const entry = ptxIsa && x.kind === KIND.ptx ? rewritePtx(x.at) : buf.subarray(x.at, x.at + x.size);
      if (w + entry.length > o + hsz + fsz)
        throw new Error(`container at ${o}: rewritten entries outgrow it`);
      entry.copy(out, w);
      w += entry.length;
    }
    out.fill(0, w, o + hsz + fsz);
    out.writeBigUInt64LE(BigInt(w - o - hsz), o + 8);
    stats.trimmed++;
    stats.kept += keep.length;
    stats.dropped += entries.length - keep.length;
    stats.bytesAfter += w - o - hsz;
  }
  o += hsz + fsz;
}
if (stats.containers === 0) throw new Error(`${input}: .nv_fatbin holds no fat binary`);
writeFileSync(output, out);
console.error(
  `cuda-trim-fatbin: ${stats.trimmed}/${stats.containers} containers trimmed to ${spec} ` +
    `(${stats.kept} entries kept, ${stats.dropped} zeroed): GPU code ${(stats.bytesBefore / 1e6).toFixed(1)} → ` +
    `${(stats.bytesAfter / 1e6).toFixed(1)} MB` +
    (ptxIsa ? `; PTX .version ${[...stats.isa].map(([v, n]) => `${v} (${n})`).join(", ")} → ${ptxIsa}` : ""),
);
