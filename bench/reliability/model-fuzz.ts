import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../../src/util/rng.js";
import { type PartResult, repoRoot, Tally } from "./common.js";
import { DEEP, deepen, type Json, replaceRandomNode } from "./import-fuzz.js";
import type { FileReport } from "./model-fuzz-child.js";

/**
 * Model-file fuzz: GGUF and safetensors files with mutated headers (counts, lengths, types, dims and offsets
 * set to huge or wrong values, flipped bytes, truncations; safetensors header JSON rewritten with wrong types,
 * huge numbers and deep nesting), read by steerlm's readers in a child process. Every file must be accepted
 * or refused with a located error, each within `MAX_MS` and the process within `MAX_RSS_MB`.
 */
export interface ModelFuzzOptions {
  dir: string;
  seed: number;
  files: number;
  /** GGUF files to mutate (a steerlm export and a llama.cpp-written one). */
  ggufs: string[];
  /** Whether each file must be read within MAX_MS (the memory bound always holds). */
  timeBound: boolean;
}

export const MAX_MS = 5000;
export const MAX_RSS_MB = 1024;
/** A file still being read after this long is a hang: the child is killed and the next file tried. */
const HANG_MS = 30_000;

const INTERESTING = [
  0n,
  1n,
  0xffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  1n << 40n,
  (1n << 53n) + 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

/** Sizes of GGUF value types by id (`enum gguf_type`); strings (8) and arrays (9) have their own layout. */
const GGUF_SIZES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

/**
 * The offsets and widths of a GGUF header's structural numbers (counts, lengths, types, dims, offsets): where a
 * hostile value does the most harm. Written from the GGUF spec (ggml/docs/gguf.md), not from src/gguf.
 */
function ggufFields(b: Buffer): Array<{ at: number; bytes: 4 | 8 }> {
  const out: Array<{ at: number; bytes: 4 | 8 }> = [
    { at: 4, bytes: 4 },
    { at: 8, bytes: 8 },
    { at: 16, bytes: 8 },
  ];
  let p = 24;
  const u32 = () => {
    out.push({ at: p, bytes: 4 });
    p += 4;
    return b.readUInt32LE(p - 4);
  };
  const u64 = () => {
    out.push({ at: p, bytes: 8 });
    p += 8;
    return Number(b.readBigUInt64LE(p - 8));
  };
  const str = () => {
    const n = u64();
    p += n;
  };
  const value = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      const item = u32();
      const n = u64();
      if (item === 8 || item === 9) for (let i = 0; i < n; i++) value(item);
      else p += n * (GGUF_SIZES[item] ?? 0);
    } else p += GGUF_SIZES[type] ?? 0;
  };
  const tensors = Number(b.readBigUInt64LE(8));
  const kvs = Number(b.readBigUInt64LE(16));
  for (let i = 0; i < kvs; i++) {
    str();
    value(u32());
  }
  for (let i = 0; i < tensors; i++) {
    str();
    const dims = u32();
    for (let d = 0; d < dims; d++) u64();
    u32();
    u64();
  }
  return out;
}

/** A small safetensors file (F32 and BF16 tensors), written from the format's README. */
function safetensorsSource(): Buffer {
  const header: Record<string, unknown> = {
    __metadata__: { format: "pt" },
    "model.embed_tokens.weight": { dtype: "F32", shape: [8, 4], data_offsets: [0, 128] },
    "model.norm.weight": { dtype: "BF16", shape: [4], data_offsets: [128, 136] },
  };
  return encodeSafetensors(JSON.stringify(header), Buffer.alloc(136, 0x3c));
}

function encodeSafetensors(json: string, data: Buffer, lengthOverride?: bigint): Buffer {
  const h = Buffer.from(json + " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8), "utf8");
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  return Buffer.concat([n, h, data]);
}

function writeNumber(c: Buffer, at: number, bytes: 4 | 8, v: bigint): void {
  if (bytes === 4) c.writeUInt32LE(Number(v & 0xffffffffn), at);
  else c.writeBigUInt64LE(v & ((1n << 64n) - 1n), at);
}

function mutateGguf(
  rng: Rng,
  src: Buffer,
  fields: Array<{ at: number; bytes: 4 | 8 }>,
  headerEnd: number,
): [string, Buffer] {
  const c = Buffer.from(src);
  const kind = rng.pick(["field", "field", "flip", "truncate"]);
  if (kind === "field") {
    for (let n = rng.int(1, 2); n > 0; n--) {
      const f = rng.pick(fields);
      const old = f.bytes === 4 ? BigInt(c.readUInt32LE(f.at)) : c.readBigUInt64LE(f.at);
      const v = rng.chance(0.2) ? old + BigInt(rng.int(-2, 2)) : rng.pick(INTERESTING);
      writeNumber(c, f.at, f.bytes, v < 0n ? 0n : v);
    }
    return [kind, c];
  }
  if (kind === "flip") {
    for (let n = rng.int(1, 8); n > 0; n--) c[rng.int(0, headerEnd - 1)]! ^= rng.int(1, 255);
    return [kind, c];
  }
  return [kind, c.subarray(0, rng.int(0, rng.chance(0.5) ? headerEnd : c.length - 1))];
}

function mutateSafetensors(rng: Rng, src: Buffer): [string, Buffer] {
  const n = Number(src.readBigUInt64LE(0));
  const header = JSON.parse(src.toString("utf8", 8, 8 + n)) as Json;
  const data = src.subarray(8 + n);
  const kind = rng.pick(["length", "flip", "json", "json", "truncate"]);
  if (kind === "length")
    return [kind, encodeSafetensors(JSON.stringify(header), data, rng.pick(INTERESTING))];
  if (kind === "flip") {
    const c = Buffer.from(src);
    for (let k = rng.int(1, 8); k > 0; k--) c[rng.int(0, 8 + n - 1)]! ^= rng.int(1, 255);
    return [kind, c];
  }
  if (kind === "truncate") return [kind, src.subarray(0, rng.int(0, src.length - 1))];
  const wrong: Json[] = [
    null,
    -1,
    1e308,
    2 ** 53 + 2,
    "F64",
    "x",
    [],
    {},
    [-1, 8],
    [0, 2 ** 60],
    [[[[[1]]]]],
  ];
  const depth = rng.pick([100, 10_000, 100_000]);
  const mutated = replaceRandomNode(rng, header, () => (rng.chance(0.15) ? DEEP : rng.pick(wrong)));
  return [kind, encodeSafetensors(deepen(JSON.stringify(mutated), depth), data)];
}

interface ChildRun {
  reports: FileReport[];
  /** The file being read when the child was killed or died, if any. */
  stuck?: string;
  stderr: string;
}

/** Reads `files` in a child process; kills it when one file takes longer than HANG_MS. */
function readInChild(files: string[], listPath: string): Promise<ChildRun> {
  writeFileSync(listPath, JSON.stringify(files));
  const child = spawn(
    process.execPath,
    [
      "--max-old-space-size=512",
      "--import",
      "tsx",
      fileURLToPath(new URL("./model-fuzz-child.ts", import.meta.url)),
      listPath,
    ],
    { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
  );
  const reports: FileReport[] = [];
  let stderr = "";
  let pending = "";
  let timer = setTimeout(() => child.kill("SIGKILL"), HANG_MS * 2); // the first file also pays for startup
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    pending += d;
    let nl = pending.indexOf("\n");
    while (nl !== -1) {
      reports.push(JSON.parse(pending.slice(0, nl)) as FileReport);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf("\n");
      clearTimeout(timer);
      timer = setTimeout(() => child.kill("SIGKILL"), HANG_MS);
    }
  });
  return new Promise((ok) =>
    child.on("close", () => {
      clearTimeout(timer);
      ok({ reports, stuck: reports.length < files.length ? files[reports.length] : undefined, stderr });
    }),
  );
}

export async function modelFuzz(o: ModelFuzzOptions): Promise<PartResult> {
  const t = new Tally("model-file fuzz");
  const rng = new Rng(`model-fuzz:${o.seed}`);
  const sources = o.ggufs.map((path) => {
    const b = readFileSync(path);
    const fields = ggufFields(b);
    const last = fields[fields.length - 1] as { at: number; bytes: number };
    return { path, b, fields, headerEnd: last.at + last.bytes };
  });
  const st = safetensorsSource();
  const files: string[] = [];
  const kinds = new Map<string, string>();
  for (let i = 0; i < o.files; i++) {
    const gguf = i % 2 === 0;
    const [kind, bytes] = gguf
      ? (() => {
          const s = rng.pick(sources);
          return mutateGguf(rng, s.b, s.fields, s.headerEnd);
        })()
      : mutateSafetensors(rng, st);
    const file = join(o.dir, `m${String(i).padStart(4, "0")}.${gguf ? "gguf" : "safetensors"}`);
    writeFileSync(file, bytes);
    files.push(file);
    kinds.set(file, `${gguf ? "gguf" : "safetensors"} ${kind}`);
  }
  const outcomes: Record<string, number> = {};
  let maxMs = 0;
  let maxRss = 0;
  let left = files;
  while (left.length > 0) {
    const r = await readInChild(left, join(o.dir, "list.json"));
    for (const rep of r.reports) {
      outcomes[rep.outcome] = (outcomes[rep.outcome] ?? 0) + 1;
      maxMs = Math.max(maxMs, rep.ms);
      maxRss = Math.max(maxRss, rep.rssMb);
      const what = `${rep.file} (${kinds.get(rep.file)})`;
      t.check(
        (rep.outcome === "accepted" || rep.outcome === "located") &&
          (!o.timeBound || rep.ms <= MAX_MS) &&
          rep.rssMb <= MAX_RSS_MB,
        () => `${what}: ${rep.outcome}, ${rep.ms} ms, ${rep.rssMb} MB: ${rep.message ?? ""}`,
      );
    }
    if (r.stuck === undefined) break;
    t.check(
      false,
      () =>
        `${r.stuck} (${kinds.get(r.stuck as string)}): hung or killed the reader:\n${r.stderr.slice(-1000)}`,
    );
    left = left.slice(r.reports.length + 1);
  }
  t.notes.push(
    `${JSON.stringify(outcomes)}; slowest file ${maxMs} ms (bound ${MAX_MS}), peak reader RSS ${maxRss} MB (bound ${MAX_RSS_MB})`,
  );
  return t.result();
}
