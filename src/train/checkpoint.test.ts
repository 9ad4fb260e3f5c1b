import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { resolveLlamaConfig } from "../model/config.js";
import { LlamaModel } from "../model/model.js";
import { Rng } from "../util/rng.js";
import {
  captureCheckpoint,
  readCheckpoint,
  readCheckpointFile,
  restoreCheckpoint,
  writeCheckpoint,
  writeCheckpointFile,
} from "./checkpoint.js";
import { Trainer } from "./trainer.js";

const backend = new Backend(1);
const tmp = tempDir("steerlm-ckpt-");
afterAll(() => {
  backend.free();
  tmp.cleanup();
});

const cfg = resolveLlamaConfig({ vocabSize: 24, hiddenSize: 16, numLayers: 2, numHeads: 2, ffnSize: 32 });
const opts = {
  batchSize: 2,
  seqLen: 6,
  optimizer: { lr: 5e-3, warmupSteps: 2, totalSteps: 10, weightDecay: 0.1, maxGradNorm: 1 },
};

function nextBatch(rng: Rng) {
  const tokens = Int32Array.from({ length: 12 }, () => rng.int(0, cfg.vocabSize - 1));
  return { tokens, labels: tokens };
}

describe("checkpoints", () => {
  it("resume gives exactly the run that was never interrupted (weights, AdamW moments, step, RNG)", async () => {
    const lora = { rank: 2, alpha: 4, targets: ["q", "v"] as const };
    const make = async () => {
      const model = await LlamaModel.create(backend, cfg, null, {
        seed: 1,
        lora: { ...lora, targets: [...lora.targets] },
      });
      return { model, tr: new Trainer(backend, model, opts) };
    };
    // uninterrupted: 5 steps
    const a = await make();
    const rngA = new Rng(42);
    const lossesA = Array.from({ length: 5 }, () => a.tr.trainStep(nextBatch(rngA)).loss);
    // interrupted after 3, saved, resumed in a fresh model
    const b = await make();
    const rngB = new Rng(42);
    const lossesB = Array.from({ length: 3 }, () => b.tr.trainStep(nextBatch(rngB)).loss);
    const path = join(tmp.path, "run.ckpt");
    await writeCheckpoint(path, captureCheckpoint(b.tr, { rng: rngB.state, dataPosition: { index: 3 } }));
    expect(readdirSync(tmp.path)).toEqual(["run.ckpt"]); // no temporary file left behind
    const c = await make();
    const state = await readCheckpoint(path);
    expect(state.step).toBe(3);
    expect(state.dataPosition).toEqual({ index: 3 });
    expect(state.model.lora?.rank).toBe(2);
    restoreCheckpoint(c.tr, state);
    const rngC = new Rng(state.rng);
    lossesB.push(...Array.from({ length: 2 }, () => c.tr.trainStep(nextBatch(rngC)).loss));
    expect(lossesB).toEqual(lossesA);
    const name = "blk.1.attn_v.lora_b";
    expect(Array.from(c.model.getWeight(name))).toEqual(Array.from(a.model.getWeight(name)));
    for (const x of [a, b, c]) {
      x.tr.free();
      x.model.free();
    }
  });

  it("rejects a wrong magic, a newer version and a truncated file with the file name", async () => {
    const model = await LlamaModel.create(backend, cfg, null, { seed: 2 });
    const tr = new Trainer(backend, model, opts);
    const path = join(tmp.path, "x.ckpt");
    await writeCheckpoint(path, captureCheckpoint(tr, { rng: new Rng(1).state, dataPosition: null }));
    const good = readFileSync(path);
    const bad = join(tmp.path, "bad.ckpt");
    writeFileSync(bad, Buffer.concat([Buffer.from("GGUF"), good.subarray(4)]));
    await expect(readCheckpoint(bad)).rejects.toThrow(`${bad}: not a steerlm checkpoint`);
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(99, 8);
    writeFileSync(bad, v2);
    await expect(readCheckpoint(bad)).rejects.toThrow("version 99 is not supported");
    writeFileSync(bad, good.subarray(0, good.length - 100));
    await expect(readCheckpoint(bad)).rejects.toThrow("truncated checkpoint");
    tr.free();
    model.free();
  });

  it("the container round-trips metadata, blobs and shapes, byte-identically, and keeps formats apart", async () => {
    const blobs = [
      { name: "b", kind: "weight" as const, data: Float32Array.from([1, -2, 3.5, 0, 7, 8]), shape: [3, 2] },
      { name: "b", kind: "m" as const, data: Float32Array.from([0.25]) },
      { name: "a", kind: "v" as const, data: new Float32Array(17).fill(-1e-3) },
    ];
    const meta = { format: "steerlm-sft-checkpoint", step: 7, nested: { x: [1, 2] } };
    const p1 = join(tmp.path, "c1.ckpt");
    const p2 = join(tmp.path, "c2.ckpt");
    writeCheckpointFile(p1, meta, blobs);
    writeCheckpointFile(p2, meta, blobs);
    expect(readFileSync(p1).equals(readFileSync(p2))).toBe(true);
    expect(readFileSync(p1).toString("latin1", 0, 8)).toBe("STEERCKP");
    const back = readCheckpointFile(p1);
    expect(back.meta).toEqual(meta);
    expect(back.blobs.map((b) => [b.name, b.kind, b.shape, Array.from(b.data)])).toEqual(
      blobs.map((b) => [b.name, b.kind, b.shape, Array.from(b.data)]),
    );
    expect(() =>
      writeCheckpointFile(p1, meta, [
        { name: "w", kind: "weight", data: new Float32Array(5), shape: [2, 2] },
      ]),
    ).toThrow("w: shape [2,2] does not match 5 values");
    // An SFT run's checkpoint is not a trainer state.
    await expect(readCheckpoint(p1)).rejects.toThrow(
      `${p1}: this checkpoint holds a "steerlm-sft-checkpoint"`,
    );
    expect(() => readCheckpointFile(join(tmp.path, "none.ckpt"))).toThrow(
      "cannot read the checkpoint: ENOENT",
    );
  });
});
