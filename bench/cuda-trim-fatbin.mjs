#!/usr/bin/env node
// Writes a copy of a CUDA shared library whose embedded GPU code keeps only the entries one GPU family
// needs, so that it travels to a GPU machine in one 64 MiB `run` call. Only for that transport: the
// copy is byte-identical outside the .nv_fatbin section, and inside it every fat-binary container stays
// at its offset (the host code points at each one); its entries are compacted and its size field
// shrunk, the freed tail zeroed (which compresses to nothing). A container without a wanted entry is
// left whole.
//
//   node bench/cuda-trim-fatbin.mjs <in.so> <out.so> [ptx:90,sass:90]   (default: ptx:90, for Hopper)
//
// node-llama-cpp 3.21.1's CUDA 13 libggml-cuda.so holds PTX for compute_75/80/90 and SASS for
// sm_86/89/120/121: an H100/H200 (sm_90) runs its compute_90 PTX, compiled by the driver at load time.
import { readFileSync, writeFileSync } from "node:fs";

const [input, output, spec = "ptx:90"] = process.argv.slice(2);
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

// ELF64 section headers → .nv_fatbin
if (u32(0) !== 0x464c457f || buf[4] !== 2) throw new Error(`${input}: not a 64-bit ELF file`);
const shoff = u64(0x28);
const shentsize = u16(0x3a);
const shnum = u16(0x3c);
const shstr = shoff + u16(0x3e) * shentsize;
const strtab = u64(shstr + 0x18);
let fatbin = null;
for (let i = 0; i < shnum; i++) {
  const h = shoff + i * shentsize;
  let end = strtab + u32(h);
  while (buf[end] !== 0) end++;
  if (buf.toString("latin1", strtab + u32(h), end) === ".nv_fatbin")
    fatbin = { off: u64(h + 0x18), size: u64(h + 0x20) };
}
if (!fatbin) throw new Error(`${input}: no .nv_fatbin section`);

const FATBIN_MAGIC = 0xba55ed50;
const out = Buffer.from(buf);
const stats = { containers: 0, trimmed: 0, kept: 0, dropped: 0, bytesBefore: 0, bytesAfter: 0 };
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
      buf.copy(out, w, x.at, x.at + x.size);
      w += x.size;
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
    `${(stats.bytesAfter / 1e6).toFixed(1)} MB`,
);
