import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { InputError } from "../util/errors.js";
import {
  metaArray,
  metaBool,
  metaNumber,
  metaString,
  readGguf,
  readTensorBytes,
  readTensorF32,
} from "./reader.js";

const tiny = sharedData("gguf", "llama-2-tiny-random.gguf");

/** An independent half-float decode (formula, not the lookup table the reader uses). */
function halfToFloat(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

describe.skipIf(!haveSharedData)("readGguf on llama-2-tiny-random.gguf", () => {
  it("reads the metadata with its types", async () => {
    const f = await readGguf(tiny);
    expect(f.version).toBe(3);
    expect(f.alignment).toBe(32);
    expect(metaString(f, "general.architecture")).toBe("llama");
    expect(f.metadata.get("llama.block_count")).toEqual({ type: "uint32", value: 1 });
    expect(metaNumber(f, "llama.embedding_length")).toBe(8);
    expect(metaNumber(f, "llama.attention.head_count")).toBe(2);
    expect(metaNumber(f, "llama.attention.head_count_kv")).toBe(2);
    expect(metaNumber(f, "llama.feed_forward_length")).toBe(32);
    expect(metaNumber(f, "llama.context_length")).toBe(4096);
    expect(f.metadata.get("llama.attention.layer_norm_rms_epsilon")).toEqual({
      type: "float32",
      value: Math.fround(1e-5),
    });
    expect(metaString(f, "tokenizer.ggml.model")).toBe("llama");
    const tokens = metaArray(f, "tokenizer.ggml.tokens", "string");
    expect(tokens.length).toBe(32000);
    expect(tokens.slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(tokens[3]).toBe("<0x00>");
    expect(metaArray(f, "tokenizer.ggml.scores", "float32").length).toBe(32000);
    expect(metaArray(f, "tokenizer.ggml.token_type", "int32").slice(0, 4)).toEqual([2, 3, 3, 6]);
    expect(metaNumber(f, "tokenizer.ggml.bos_token_id")).toBe(1);
    expect(f.metadata.size).toBe(18);
  });

  it("reads every tensor info (checked against gguf-py's GGUFReader)", async () => {
    const f = await readGguf(tiny);
    expect(f.dataOffset).toBe(724416);
    const rows = f.tensors.map((t) => [t.name, t.shape, t.type, t.offset, t.byteLength]);
    expect(rows).toEqual([
      ["token_embd.weight", [8, 32000], "F16", 0, 512000],
      ["blk.0.attn_q.weight", [8, 8], "F16", 512000, 128],
      ["blk.0.attn_k.weight", [8, 8], "F16", 512128, 128],
      ["blk.0.attn_v.weight", [8, 8], "F16", 512256, 128],
      ["blk.0.attn_output.weight", [8, 8], "F16", 512384, 128],
      ["blk.0.ffn_gate.weight", [8, 32], "F16", 512512, 512],
      ["blk.0.ffn_up.weight", [8, 32], "F16", 513024, 512],
      ["blk.0.ffn_down.weight", [32, 8], "F16", 513536, 512],
      ["blk.0.attn_norm.weight", [8], "F32", 514048, 32],
      ["blk.0.ffn_norm.weight", [8], "F32", 514080, 32],
      ["output_norm.weight", [8], "F32", 514112, 32],
      ["output.weight", [8, 32000], "F16", 514144, 512000],
    ]);
    const last = f.tensors.at(-1);
    expect(f.dataOffset + (last?.offset ?? 0) + (last?.byteLength ?? 0)).toBe(readFileSync(tiny).length);
  });

  it("dequantises F16 and F32 tensors like an independent decode of the raw bytes", async () => {
    const f = await readGguf(tiny);
    const raw = readFileSync(tiny);
    for (const name of [
      "blk.0.attn_q.weight",
      "token_embd.weight",
      "blk.0.ffn_down.weight",
      "output_norm.weight",
    ]) {
      const t = f.tensors.find((x) => x.name === name);
      if (!t) throw new Error(name);
      const values = await readTensorF32(f, name);
      expect(values.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      for (const i of [0, 1, 7, values.length - 1, Math.floor(values.length / 3)]) {
        const at = f.dataOffset + t.offset;
        const ref =
          t.type === "F16" ? halfToFloat(raw.readUInt16LE(at + 2 * i)) : raw.readFloatLE(at + 4 * i);
        expect(values[i]).toBe(ref);
      }
    }
    // First values of attn_q as printed by gguf-py (numpy float16 -> float32).
    const q = await readTensorF32(f, "blk.0.attn_q.weight");
    expect(Array.from(q.slice(0, 4))).toEqual([
      0.024261474609375, 0.0196990966796875, -0.0509033203125, -0.041351318359375,
    ]);
    expect((await readTensorBytes(f, "output_norm.weight")).length).toBe(32);
  });

  it("typed getters name the key when it is absent or of the wrong type", async () => {
    const f = await readGguf(tiny);
    expect(() => metaString(f, "general.nope")).toThrow(`${tiny}: general.nope: missing metadata key`);
    expect(() => metaNumber(f, "general.architecture")).toThrow(
      "general.architecture: expected a number, got string",
    );
    expect(() => metaArray(f, "tokenizer.ggml.scores", "int32")).toThrow(
      "tokenizer.ggml.scores: expected an array of int32, got array of float32",
    );
    expect(() => metaBool(f, "llama.block_count")).toThrow(InputError);
    expect(metaNumber(f, "llama.rope.freq_base", 10000)).toBe(10000);
    expect(metaBool(f, "tokenizer.ggml.add_bos_token", true)).toBe(true);
    await expect(readTensorF32(f, "blk.9.attn_q.weight")).rejects.toThrow(
      "blk.9.attn_q.weight: tensor not found",
    );
  });
});

describe.skipIf(!haveSharedData)("bad files give an InputError naming the file and the byte", () => {
  const dir = tempDir();
  afterAll(() => dir.cleanup());

  async function readError(path: string): Promise<InputError> {
    try {
      await readGguf(path);
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      return e as InputError;
    }
    throw new Error(`${path} was read without error`);
  }

  it("wrong magic", async () => {
    const p = join(dir.path, "notgguf.gguf");
    writeFileSync(p, Buffer.from('{"hello": "this is JSON"}'));
    const e = await readError(p);
    expect(e.message).toBe(`${p}: byte 0: magic: not a GGUF file: magic is "{\\"he", expected "GGUF"`);
  });

  it("unsupported version", async () => {
    const p = join(dir.path, "v9.gguf");
    const b = Buffer.from(readFileSync(tiny).subarray(0, 64));
    b.writeUInt32LE(9, 4);
    writeFileSync(p, b);
    expect((await readError(p)).message).toBe(
      `${p}: byte 4: version: unsupported GGUF version 9 (supported: 2, 3)`,
    );
  });

  it("truncated inside the metadata, inside the tensor infos and inside the data", async () => {
    const full = readFileSync(tiny);
    const cases: Array<[number, RegExp]> = [
      [2, /byte 0: magic: file ends at byte 2/],
      [
        100_000,
        /byte \d+: metadata "tokenizer.ggml.tokens": array of 32000 string runs past the end of the file/,
      ],
      [400_000, /byte 399993: metadata "tokenizer.ggml.tokens"\[\d+\]: file ends at byte 400000 but 8 more/],
      [724_000, /byte 723999: tensor "blk.0.attn_output.weight": file ends at byte 724000 but 8 more bytes/],
      [
        1_000_000,
        /: tensor "token_embd.weight": tensor data ends at byte 1236416 but the file has 1000000 bytes/,
      ],
    ];
    for (const [len, re] of cases) {
      const p = join(dir.path, `cut-${len}.gguf`);
      writeFileSync(p, full.subarray(0, len));
      const e = await readError(p);
      expect(e.message.startsWith(`${p}: `)).toBe(true);
      expect(e.message).toMatch(re);
    }
  });

  it("a missing file", async () => {
    const e = await readError(join(dir.path, "absent.gguf"));
    expect(e.message).toMatch(/absent\.gguf: cannot open: ENOENT/);
  });
});

/**
 * A GGUF that went through a text conversion (bytes decoded as UTF-8 and re-encoded: every invalid sequence,
 * e.g. in float metadata, becomes U+FFFD, EF BF BD), as the copies in ../shared/data once were. Made here
 * from the intact files: the reader must say where it failed and why that probably happened.
 */
describe.skipIf(!haveSharedData)(
  "a text-mangled copy of the vocab GGUFs in ../shared/data/llama-cpp-vocab",
  () => {
    const dir = tempDir();
    afterAll(() => dir.cleanup());
    it.each(["gpt-2", "llama-spm", "phi-3"])(
      "ggml-vocab-%s.gguf: a clear error with a hint",
      async (name) => {
        const intact = readFileSync(sharedData("llama-cpp-vocab", `ggml-vocab-${name}.gguf`));
        const p = join(dir.path, `mangled-${name}.gguf`);
        writeFileSync(p, Buffer.from(intact.toString("utf8"), "utf8"));
        expect(readFileSync(p).indexOf(Buffer.from([0xef, 0xbf, 0xbd]))).toBeGreaterThan(0);
        const e = await readGguf(p).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(e).toBeInstanceOf(InputError);
        const err = e as InputError;
        expect(err.message).toMatch(
          new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: byte \\d+: metadata`),
        );
        expect(err.hint).toMatch(/U\+FFFD/);
      },
    );
  },
);
