import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGguf } from "../src/gguf/reader.js";
import { SteerableModel } from "../src/inference/index.js";
import { llamaCppProbabilities } from "../src/model/check.js";
import { loadGgufTokenizer } from "../src/tokenizer/gguf.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, runCli, tempDir } from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

/**
 * Damaged GGUFs never reach node-llama-cpp: its header parser trusts counts and lengths (a tensor count of
 * 2^40 grew it past 1.5 GB in a minute), so every path that loads a model through it must refuse these files
 * first, with the byte and field of the damage.
 */

const dir = tempDir();
let good: Buffer;

interface Damage {
  name: string;
  /** The damaged file's bytes, made from the good one. */
  make(b: Buffer): Buffer;
  /** What the error must say. */
  error: RegExp;
}

const u64 = (b: Buffer, at: number, v: bigint) => {
  const out = Buffer.from(b);
  out.writeBigUInt64LE(v, at);
  return out;
};

/** Where a metadata key's value starts (after the key and its u32 type). */
function valueAt(b: Buffer, key: string): number {
  const at = b.indexOf(Buffer.from(key, "utf8"));
  if (at < 0) throw new Error(`no key ${key} in the fixture`);
  return at + Buffer.byteLength(key) + 4;
}

/** The offset field of a tensor's info (after its name, dims and type). */
function tensorOffsetAt(b: Buffer, name: string, dims: number): number {
  const at = b.lastIndexOf(Buffer.from(name, "utf8"));
  return at + Buffer.byteLength(name) + 4 + 8 * dims + 4;
}

// biome-ignore format: one damage per line reads as a table
const DAMAGES: Damage[] = [
  { name: "tensor count 2^40", make: (b) => u64(b, 8, 1n << 40n), error: /byte 24: metadata count: counts \(1099511627776 tensors, \d+ keys\) exceed the file size/ },
  { name: "metadata count 2^40", make: (b) => u64(b, 16, 1n << 40n), error: /byte 24: metadata count: counts \(\d+ tensors, 1099511627776 keys\) exceed the file size/ },
  { name: "first key 2^50 bytes long", make: (b) => u64(b, 24, 1n << 50n), error: /byte 24: metadata key #0: string length 1125899906842624 runs past the end/ },
  { name: "vocabulary of 2^40 tokens", make: (b) => u64(b, valueAt(b, "tokenizer.ggml.tokens") + 4, 1n << 40n), error: /metadata "tokenizer\.ggml\.tokens": array of 1099511627776 string runs past the end/ },
  { name: "a token 2^40 bytes long", make: (b) => u64(b, valueAt(b, "tokenizer.ggml.tokens") + 12, 1n << 40n), error: /metadata "tokenizer\.ggml\.tokens": string length 1099511627776 runs past the end/ },
  { name: "a tensor's data offset past the end", make: (b) => u64(b, tensorOffsetAt(b, "output.weight", 2), 1n << 36n), error: /tensor "output\.weight": tensor data ends at byte \d+ but the file has/ },
  { name: "the first half", make: (b) => b.subarray(0, b.length >> 1), error: /tensor data ends at byte \d+ but the file has \d+ bytes \(truncated file\?\)/ },
  { name: "the second half", make: (b) => b.subarray(b.length >> 1), error: /byte 0: magic: not a GGUF file/ },
];

const pathOf = (d: Damage) => join(dir.path, `${d.name.replaceAll(/\W+/g, "-")}.gguf`);

beforeAll(async () => {
  if (!haveSharedData) return;
  good = readFileSync(await writeSteerModel(dir.path, "good.gguf"));
  for (const d of DAMAGES) writeFileSync(pathOf(d), d.make(good));
});

afterAll(() => dir.cleanup());

describe.skipIf(!haveSharedData)("damaged model files are refused before node-llama-cpp sees them", () => {
  it("the fixture's damage lands where each case says (steerlm's reader agrees)", async () => {
    for (const d of DAMAGES) await expect(readGguf(pathOf(d)), d.name).rejects.toThrow(d.error);
  });

  for (const d of DAMAGES) {
    it(`${d.name}: SteerableModel.load (serve, generate, chat, bootstrap), the GGUF tokenizer, model check`, async () => {
      const load = SteerableModel.load({ modelPath: pathOf(d) });
      await expect(load).rejects.toBeInstanceOf(InputError);
      await expect(load).rejects.toThrow(d.error);
      await expect(loadGgufTokenizer(pathOf(d))).rejects.toThrow(d.error);
      await expect(llamaCppProbabilities(pathOf(d), {})).rejects.toThrow(d.error);
    });
  }

  it("a damaged LoRA adapter is refused the same way", async () => {
    const adapter = pathOf(DAMAGES[0]);
    const load = SteerableModel.load({ modelPath: join(dir.path, "good.gguf"), loraPath: adapter });
    await expect(load).rejects.toThrow(DAMAGES[0].error);
  });

  it("steerlm generate exits at once with the located error", async () => {
    const r = await runCli(["generate", "-m", pathOf(DAMAGES[0]), "hi"], { timeoutMs: 60_000 });
    expect(r.stderr).toMatch(DAMAGES[0].error);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.code).toBe(1);
  });
});
