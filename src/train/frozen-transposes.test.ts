import { afterAll, describe, expect, it } from "vitest";
import { tinyLlama } from "../../test/engine.js";
import { useKernels } from "../../test/kernel-modes.js";
import { Backend } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import { type FrozenType, LlamaModel } from "../model/model.js";
import { declareFrozenTransposes } from "./frozen-transposes.js";

/** Which frozen matrices get a stored Wᵀ for dx = Wᵀ·dy, by base type and compute type. */
const backend = new Backend(1);
afterAll(() => {
  useKernels("kernels");
  backend.free();
});

const cfg = tinyLlama({ vocabSize: 64, hiddenSize: 64, ffnSize: 96 }); // every dimension a multiple of 32
const lora = { rank: 4, alpha: 8, targets: ["q", "v"] as const };

/** "name: type of the copy" for every Wᵀ declared, and the frozen matrices' own types. */
async function declared(frozenType: FrozenType, computeType: "f32" | "bf16", isCpu = true) {
  const model = await LlamaModel.create(backend, cfg, null, { lora, frozenType, computeType });
  const s = new Context(256);
  const made = declareFrozenTransposes(model, s, isCpu);
  const copies = [...made].map(([w, wt]) => `${w.name}: ${wt.type}`).sort();
  const frozen = model.params
    .filter((p) => !p.trainable && p.shape.length === 2)
    .map((p) => ({ name: p.name, type: model.tensor(p.name).type }));
  s.free();
  model.free();
  return { copies, frozen };
}

describe("declareFrozenTransposes", () => {
  it("stores no Wᵀ that steerlm's GEMM reads in place with f32 compute", async () => {
    useKernels("kernels");
    for (const t of ["f32", "f16", "bf16", "q8_0"] as const)
      expect((await declared(t, "f32")).copies).toEqual([]);
  });

  it("with bf16 compute, rounds f32 bases to bf16 once and reads f16 and Q8_0 bases' Wᵀ in place", async () => {
    useKernels("kernels");
    const { copies: f32Copies, frozen: f32Frozen } = await declared("f32", "bf16");
    expect(f32Copies).toEqual(f32Frozen.map((p) => `${p.name}: bf16`).sort());
    for (const t of ["f16", "q8_0"] as const) {
      const { copies, frozen } = await declared(t, "bf16");
      expect(frozen.filter((p) => p.type === t).length).toBeGreaterThan(8);
      // dx widens them against an f32 dy: only the matrices still in f32 (the embedding) are rounded
      const f32 = frozen.filter((p) => p.type === "f32");
      expect(copies, t).toEqual(f32.map((p) => `${p.name}: bf16`).sort());
    }
  });

  it("copies every low-precision Wᵀ where nothing reads it in place (no kernels, or off the CPU)", async () => {
    for (const [mode, isCpu] of [
      ["ggml fallback", true],
      ["kernels", false],
    ] as const) {
      useKernels(mode);
      for (const t of ["f16", "q8_0"] as const) {
        const { copies, frozen } = await declared(t, "f32", isCpu);
        const low = frozen.filter((p) => p.type !== "f32");
        expect(copies, `${mode} ${t}`).toEqual(
          expect.arrayContaining(low.map((p) => `${p.name}: ${p.type}`)),
        );
      }
    }
  });
});
