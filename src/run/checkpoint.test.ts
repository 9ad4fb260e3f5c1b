import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { writeCheckpointFile } from "../train/checkpoint.js";
import { type CheckpointData, readCheckpoint, writeCheckpoint } from "./checkpoint.js";

const tmp = tempDir("steerlm-sft-ckpt-");
afterAll(() => tmp.cleanup());

const header: CheckpointData["header"] = {
  format: "steerlm-sft-checkpoint",
  step: 3,
  totalSteps: 10,
  cursor: { epoch: 0, index: 6 } as unknown as CheckpointData["header"]["cursor"],
  model: { vocabSize: 8 } as unknown as CheckpointData["header"]["model"],
  lora: null,
  baseModel: null,
  tokenizer: null,
  schema: "helpsteer2",
  settings: { lr: 1e-3 },
  tensors: [],
};

describe("SFT checkpoints (the engine's STEERCKP container)", () => {
  it("round-trips header, weights, moments and shapes; tensors sorted by role then name", () => {
    const data: CheckpointData = {
      header,
      weights: new Map([
        ["z.weight", Float32Array.from([1, 2, 3, 4, 5, 6])],
        ["a.weight", Float32Array.from([9])],
      ]),
      adamM: new Map([["z.weight", new Float32Array(6).fill(0.5)]]),
      adamV: new Map([["z.weight", new Float32Array(6).fill(0.25)]]),
    };
    const path = join(tmp.path, "step-000003.ckpt");
    writeCheckpoint(path, data, new Map([["z.weight", [3, 2]]]));
    expect(readFileSync(path).toString("latin1", 0, 8)).toBe("STEERCKP");
    const back = readCheckpoint(path);
    const { tensors: _t, ...rest } = back.header;
    const { tensors: _u, ...want } = header;
    expect(rest).toEqual(want);
    expect(back.header.tensors).toEqual([
      { name: "a.weight", role: "weight", shape: [1] },
      { name: "z.weight", role: "weight", shape: [3, 2] },
      { name: "z.weight", role: "adam_m", shape: [3, 2] },
      { name: "z.weight", role: "adam_v", shape: [3, 2] },
    ]);
    expect(Array.from(back.weights.get("z.weight") as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(back.adamV.get("z.weight") as Float32Array)).toEqual(new Array(6).fill(0.25));
  });

  it("refuses an engine trainer state with the file name and a hint", () => {
    const path = join(tmp.path, "engine.ckpt");
    writeCheckpointFile(path, { format: "steerlm-train-state", step: 1 }, []);
    expect(() => readCheckpoint(path)).toThrow(
      `${path}: not a steerlm SFT checkpoint (format "steerlm-train-state"`,
    );
  });
});
