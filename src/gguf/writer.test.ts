import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { ggmlOracle } from "./ggml-oracle.js";
import { readGguf, readTensorBytes, readTensorF32 } from "./reader.js";
import {
  arr,
  bool,
  f32,
  f64,
  type GgufMetaValue,
  i8,
  i16,
  i32,
  i64,
  STEERLM_SCHEMA_KEY,
  STEERLM_TEMPLATE_KEY,
  str,
  u8,
  u16,
  u32,
  u64,
} from "./types.js";
import { type GgufTensorInput, writeGguf } from "./writer.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

describe.skipIf(!haveSharedData)("round trip of llama-2-tiny-random.gguf", () => {
  it("read -> write gives a byte-identical file", async () => {
    const src = sharedData("gguf", "llama-2-tiny-random.gguf");
    const f = await readGguf(src);
    const tensors: GgufTensorInput[] = [];
    for (const t of f.tensors) {
      tensors.push({ name: t.name, shape: t.shape, type: t.type, data: await readTensorBytes(f, t.name) });
    }
    const out = join(dir.path, "tiny-copy.gguf");
    const n = await writeGguf(out, { metadata: [...f.metadata], tensors });
    expect(n).toBe(statSync(src).size);
    expect(readFileSync(out).equals(readFileSync(src))).toBe(true);
  });
});

describe("read after write", () => {
  it("keeps every value type, including 64-bit, float32 and empty arrays", async () => {
    const metadata: Array<[string, GgufMetaValue]> = [
      ["t.u8", u8(255)],
      ["t.i8", i8(-128)],
      ["t.u16", u16(65535)],
      ["t.i16", i16(-32768)],
      ["t.u32", u32(0xffffffff)],
      ["t.i32", i32(-0x80000000)],
      ["t.f32", f32(0.1)],
      ["t.f64", f64(0.1)],
      ["t.u64", u64(0xffff_ffff_ffff_ffffn)],
      ["t.i64", i64(-(2n ** 63n))],
      ["t.bool", bool(true)],
      ["t.str", str("héllo ▁ 世界 \u0000 end")],
      ["t.arr.str", arr("string", ["a", "", "▁b", "<0x0A>"])],
      ["t.arr.f32", arr("float32", [0.5, -1e-7, 3.4e38])],
      ["t.arr.i32", arr("int32", [1, -2, 3])],
      ["t.arr.u64", arr("uint64", [0, 2n ** 64n - 1n])],
      ["t.arr.bool", arr("bool", [true, false])],
      ["t.arr.u8", arr("uint8", [])],
      [STEERLM_SCHEMA_KEY, str(JSON.stringify({ attributes: [{ name: "quality", min: 0, max: 4 }] }))],
      [STEERLM_TEMPLATE_KEY, str("<extra_id_0>System\n{system}\n")],
    ];
    const p = join(dir.path, "values.gguf");
    await writeGguf(p, { metadata, tensors: [] });
    const f = await readGguf(p);
    expect([...f.metadata]).toEqual(metadata);
    expect(f.metadata.get("t.f32")).toEqual({ type: "float32", value: Math.fround(0.1) });
    expect(f.metadata.get("t.u32")?.type).toBe("uint32");
    expect(f.metadata.get("t.i32")?.type).toBe("int32");
    expect(f.tensors).toEqual([]);
  });

  it("keeps F32/F16/BF16/Q8_0 tensors (F32 input converted) and raw bytes of other types", async () => {
    const n = 64 * 4;
    const x = new Float32Array(n).map((_, i) => Math.sin(i) * 3);
    const q4k = ggmlOracle().quantize(
      "Q4_K",
      new Float32Array(512).map((_, i) => Math.cos(i)),
      256,
    );
    const tensors: GgufTensorInput[] = [
      { name: "a.f32", shape: [64, 4], type: "F32", data: x },
      { name: "a.f16", shape: [64, 4], type: "F16", data: x },
      { name: "a.bf16", shape: [64, 4], type: "BF16", data: x },
      { name: "a.q8", shape: [64, 4], type: "Q8_0", data: x },
      { name: "a.q4k", shape: [256, 2], type: "Q4_K", data: q4k },
      { name: "odd", shape: [3], type: "F32", data: new Float32Array([1, 2, 3]) },
    ];
    const p = join(dir.path, "tensors.gguf");
    await writeGguf(p, { metadata: [["general.alignment", u32(64)]], tensors });
    const f = await readGguf(p);
    expect(f.alignment).toBe(64);
    expect(f.dataOffset % 64).toBe(0);
    expect(f.tensors.map((t) => [t.name, t.type, t.shape, t.offset % 64])).toEqual(
      tensors.map((t) => [t.name, t.type, t.shape, 0]),
    );
    expect(Array.from(await readTensorF32(f, "a.f32"))).toEqual(Array.from(x));
    const f16 = await readTensorF32(f, "a.f16");
    const bf16 = await readTensorF32(f, "a.bf16");
    const q8 = await readTensorF32(f, "a.q8");
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      expect(Math.abs(f16[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11);
      expect(Math.abs(bf16[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
      expect(Math.abs(q8[i]! - v)).toBeLessThanOrEqual((3 / 127) * 0.5 + 3 * 2 ** -11);
    }
    expect(Buffer.from(await readTensorBytes(f, "a.q4k")).equals(Buffer.from(q4k))).toBe(true);
    const q4kValues = await readTensorF32(f, "a.q4k");
    expect(Array.from(q4kValues)).toEqual(Array.from(ggmlOracle().toFloat("Q4_K", q4k, 512)));
    expect(Array.from(await readTensorF32(f, "odd"))).toEqual([1, 2, 3]);
  });

  it("refuses bad input before touching the disk and leaves no temp file", async () => {
    const sub = tempDir();
    const p = join(sub.path, "bad.gguf");
    const t = (over: Partial<GgufTensorInput>): GgufTensorInput => ({
      name: "w",
      shape: [32],
      type: "F32",
      data: new Float32Array(32),
      ...over,
    });
    const bad: Array<[GgufTensorInput[], string]> = [
      [[t({ data: new Float32Array(31) })], "data has 31 values, the shape needs 32"],
      [[t({ type: "Q8_0", shape: [16] })], "multiple of the block size 32"],
      [[t({ type: "Q4_K" })], "multiple of the block size 256"],
      [[t({ type: "Q6_K", shape: [256], data: new Float32Array(256) })], "cannot quantise float32 to Q6_K"],
      [[t({ type: "Q8_0", data: new Uint16Array(32) })], "Uint16Array data is only for F16/BF16"],
      [[t({ type: "F16", data: new Uint16Array(16) })], "data has 32 bytes, the shape needs 64"],
      [[t({}), t({})], 'duplicate tensor name "w"'],
      [[t({ name: "x".repeat(64) })], "longer than 63 bytes"],
    ];
    for (const [tensors, msg] of bad) {
      await expect(writeGguf(p, { metadata: [], tensors })).rejects.toThrow(msg);
    }
    await expect(
      writeGguf(p, {
        metadata: [
          ["k", u32(1)],
          ["k", u32(2)],
        ],
        tensors: [],
      }),
    ).rejects.toThrow('duplicate metadata key "k"');
    await expect(writeGguf(p, { metadata: [["general.alignment", u32(48)]], tensors: [] })).rejects.toThrow(
      "power of two",
    );
    expect(readdirSync(sub.path)).toEqual([]);
    sub.cleanup();
  });

  it("value constructors refuse values that would not survive", () => {
    expect(() => u32(-1)).toThrow(RangeError);
    expect(() => u8(256)).toThrow(RangeError);
    expect(() => i32(1.5)).toThrow(RangeError);
    expect(() => u64(2 ** 60)).toThrow("pass a bigint");
    expect(() => u64(-1n)).toThrow(RangeError);
    expect(() => arr("int32", [2 ** 31])).toThrow(RangeError);
  });
});
