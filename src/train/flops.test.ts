import { describe, expect, it } from "vitest";
import { resolveLlamaConfig } from "../model/config.js";
import { trainStepFlops } from "./flops.js";

// A tiny shape counted by hand: V=10, D=4, 1 layer, 2 heads of 2 (1 kv head), F=6, batch 1 × 3 tokens.
const cfg = resolveLlamaConfig({
  vocabSize: 10,
  hiddenSize: 4,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  ffnSize: 6,
});

describe("trainStepFlops", () => {
  it("counts full training by hand", () => {
    // projections per token: q 4·4 + k 4·2 + v 4·2 + o 4·4 + gate 4·6 + up 4·6 + down 6·4 = 120 MACs
    // → 3 tokens × 120 × 2 = 720; attention QK^T + AV: 2 × (3·3·2 per head × 2 heads) × 2 = 144;
    // lm head: 3 × 4 × 10 × 2 = 240. Forward 1104; backward 2 × 1104 = 2208.
    const f = trainStepFlops(cfg, 1, 3, null);
    expect(f.forward).toBe(1104);
    expect(f.backward).toBe(2208);
    expect(f.total).toBe(3312);
    expect(f.attention).toBe(3 * 144);
  });

  it("counts LoRA on a frozen base by hand", () => {
    // base products' backward once: 720 + 240 (input gradients) + attention twice (288);
    // LoRA r=1 on q (4→4) and v (4→2): per token 1·(4+4) + 1·(4+2) = 14 MACs → 3 × 14 × 2 = 84 forward, 168 back.
    const f = trainStepFlops(cfg, 1, 3, { rank: 1, targets: ["q", "v"] });
    expect(f.forward).toBe(1104 + 84);
    expect(f.backward).toBe(720 + 240 + 288 + 168);
    expect(f.attention).toBe(432);
  });

  it("grows attention with the square of the sequence and the rest linearly", () => {
    const a = trainStepFlops(cfg, 1, 3, null);
    const b = trainStepFlops(cfg, 2, 6, null);
    expect(b.attention).toBe(a.attention * 2 * 4);
    expect(b.total - b.attention).toBe((a.total - a.attention) * 4);
  });
});
