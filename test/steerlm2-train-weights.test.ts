import { afterAll, describe, expect, it } from "vitest";
import { Backend } from "../src/ggml/backend.js";
import { resolveLlamaConfig } from "../src/model/config.js";
import { LlamaModel } from "../src/model/model.js";
import type { Example } from "../src/run/data.js";
import { SFT_DEFAULTS, type SftConfig } from "../src/run/settings.js";
import type { SampleInfo } from "../src/steerlm2/format.js";
import { steerlm2Objective } from "../src/steerlm2/train.js";
import { groupCoefficients, labelledCount, lossWeights } from "../src/steerlm2/train-weights.js";
import { type Batch, IGNORE } from "../src/train/batch.js";
import { Trainer } from "../src/train/trainer.js";
import { Rng } from "../src/util/rng.js";
import { plainAdam } from "./helpers.js";

describe("steerlm2 coefficients", () => {
  it("w = softmax per group of log Q_θ − log Q'; c = w' − w sums to 0 per group", () => {
    const logQTheta = [-10, -12, -11, -40, -300, -301];
    const logQ = [-11, -11, -11, -41, -300, -299];
    const target = [0.5, 0.25, 0.25, 1 / 3, 1 / 3, 1 / 3];
    const { w, c } = groupCoefficients(logQTheta, logQ, target, 3);
    // by hand: group 1 log-ratios (1, -1, 0), group 2 (1, 0, -2)
    const soft = (z: number[]) => z.map((x) => Math.exp(x) / z.reduce((a, y) => a + Math.exp(y), 0));
    const want = [...soft([1, -1, 0]), ...soft([1, 0, -2])];
    for (let i = 0; i < 6; i++) {
      expect(w[i]).toBeCloseTo(want[i] as number, 12);
      expect(c[i]).toBeCloseTo((target[i] as number) - (want[i] as number), 12);
    }
    for (const g of [0, 3])
      expect(Math.abs((c[g] ?? 0) + (c[g + 1] ?? 0) + (c[g + 2] ?? 0))).toBeLessThan(1e-15);
  });

  it("Q_θ = Q' with uniform targets: c = 0 exactly", () => {
    const lq = [-5.5, -700.25, -3, -8];
    const { w, c } = groupCoefficients(lq, lq, [0.25, 0.25, 0.25, 0.25], 4);
    expect([...w]).toEqual([0.25, 0.25, 0.25, 0.25]);
    expect([...c]).toEqual([0, 0, 0, 0]);
    expect([...lossWeights(c, 17, 1)]).toEqual([0, 0, 0, 0]);
  });

  it("refuses partial groups and non-finite groups", () => {
    expect(() => groupCoefficients([0, 0, 0], [0, 0, 0], [1, 0, 0], 2)).toThrow(/whole groups of 2/);
    expect(() => groupCoefficients([Number.NaN, 0], [0, 0], [1, 0], 2)).toThrow(/no finite log-ratio/);
  });
});

describe("steerlm2 objective on a real trainer", () => {
  const backend = new Backend(1);
  afterAll(() => backend.free());
  const cfg = resolveLlamaConfig({ vocabSize: 32, hiddenSize: 32, numLayers: 1, numHeads: 2, ffnSize: 48 });
  const n = 2;
  const G = 2;
  const T = 10;
  const rng = new Rng(3);
  // 2 groups of 2 samples; a 3-token prompt, responses of different lengths
  const examples: Example[] = [7, 5, 9, 6].map((len) => {
    const ids = Int32Array.from({ length: len }, () => rng.int(0, cfg.vocabSize - 1));
    return { ids, labels: Int32Array.from(ids, (id, t) => (t < 3 ? IGNORE : id)) };
  });
  const settings = {
    ...SFT_DEFAULTS,
    data: "samples.jsonl",
    output: "run",
    batchSize: n * G,
    seqLen: T,
  } as SftConfig;
  const info = (logQ: number, targetWeight: number, i: number): SampleInfo => ({
    group: Math.floor(i / n),
    sample: i % n,
    n,
    logQ,
    logPrior: 0,
    logPAttrs: 0,
    targetWeight,
  });
  const encoded = { examples, truncated: 0, dropped: 0, lossTokens: 0, longest: 9 };

  async function setup() {
    const model = await LlamaModel.create(backend, cfg, null, { seed: 4, initStd: 0.1 });
    const trainer = new Trainer(backend, model, {
      batchSize: n * G,
      seqLen: T,
      optimizer: plainAdam({ lr: 1e-2 }),
    });
    return { model, trainer };
  }

  /** Which example each packed row holds (the batcher permutes whole groups). */
  function orderOf(batch: Batch): number[] {
    return [0, 1, 2, 3].map((s) =>
      examples.findIndex(
        (ex) =>
          ex.ids.length ===
            (batch.attention as Uint8Array).subarray(s * T, (s + 1) * T).reduce((a, x) => a + x, 0) &&
          ex.ids.every((v, k) => v === batch.tokens[s * T + k]),
      ),
    );
  }

  it("Q_θ = Q' and uniform targets give zero loss weights and a zero gradient", async () => {
    const { model, trainer } = await setup();
    const uniform = (logQ: (i: number) => number) =>
      steerlm2Objective(
        examples.map((_, i) => info(logQ(i), 0.5, i)),
        n,
        "x",
      );
    // log Q' of each sample under the model as it is: a file sampled from this very model
    const probe = uniform(() => 0)
      .batches(encoded, settings, 0)
      .next().batch;
    const own = trainer.logProbs(probe).sequences;
    const order = orderOf(probe);
    expect(new Set(order).size).toBe(4);
    const exact = uniform((i) => own[order.indexOf(i)] as number);
    const { batch } = exact.batches(encoded, settings, 0).next();
    expect(batch.tokens).toEqual(probe.tokens); // the same seeded order
    const stats = exact.weigh(batch, trainer);
    expect(stats.drift).toBe(0);
    expect(stats.meanAbsC).toBe(0);
    expect([...(batch.lossWeights as Float32Array)]).toEqual([0, 0, 0, 0]);
    trainer.accumulate(batch);
    for (const name of ["blk.0.ffn_up.weight", "blk.0.attn_q.weight", "token_embd.weight"])
      expect(
        trainer.gradient(name).every((x) => x === 0),
        name,
      ).toBe(true);
    trainer.free();
    model.free();
  });

  it("the loss is −(1/G) Σ c_i log Q_θ(y_i) with the baseline from the current model", async () => {
    const { model, trainer } = await setup();
    const targets = [0.9, 0.1, 0.3, 0.7];
    const logQ = [-20, -25, -18, -30];
    const objective = steerlm2Objective(
      examples.map((_, i) => info(logQ[i] as number, targets[i] as number, i)),
      n,
      "x",
    );
    const { batch } = objective.batches(encoded, settings, 0).next();
    const stats = objective.weigh(batch, trainer);
    // recompute the oracle from logProbs, in the batch's order (the sampler permutes whole groups)
    const seq = trainer.logProbs(batch).sequences;
    const order = orderOf(batch);
    expect(new Set(order).size).toBe(4);
    const { c } = groupCoefficients(
      seq,
      order.map((i) => logQ[i] as number),
      order.map((i) => targets[i] as number),
      n,
    );
    const want = -c.reduce((a, ci, s) => a + ci * (seq[s] as number), 0) / G;
    expect(trainer.evaluate(batch).loss).toBeCloseTo(want, 5);
    expect(labelledCount(batch, 4, T)).toBe(examples.reduce((a, ex) => a + ex.ids.length - 3, 0));
    expect(stats.meanAbsC).toBeCloseTo(c.reduce((a, x) => a + Math.abs(x), 0) / 4, 12);
    const drift = order.reduce((a, i, s) => a + (seq[s] as number) - (logQ[i] as number), 0) / 4;
    expect(stats.drift).toBeCloseTo(drift, 9);
    trainer.free();
    model.free();
  });

  it("refuses a batch size that is not whole groups, and truncated samples", () => {
    const objective = steerlm2Objective(
      examples.map((_, i) => info(0, 0.5, i)),
      n,
      "s.jsonl",
    );
    expect(() => objective.batches(encoded, { ...settings, batchSize: 3 }, 0)).toThrow(
      /not a multiple of the group size n = 2/,
    );
    expect(() => objective.batches({ ...encoded, truncated: 1 }, settings, 0)).toThrow(/longer than seqLen/);
  });
});
