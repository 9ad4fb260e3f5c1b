import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { plainAdam, tempDir } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { resolveLlamaConfig } from "../model/config.js";
import { LlamaModel } from "../model/model.js";
import { Trainer } from "../train/trainer.js";
import { Rng } from "../util/rng.js";
import {
  type CheckpointData,
  type CheckpointHeader,
  checkpointName,
  latestCheckpoint,
  pruneCheckpoints,
  readCheckpoint,
  readCheckpointHeader,
  resumeRun,
  saveRunCheckpoint,
  saveTrainerCheckpoint,
  writeCheckpoint,
} from "./checkpoint.js";
import { readCheckpointFile, writeCheckpointFile } from "./checkpoint-file.js";
import { Batcher } from "./data.js";
import type { RunMetric } from "./metrics.js";

/**
 * Rewrites a checkpoint's JSON header through `edit`, as a damaged or hostile file could have it, keeping its
 * blobs' bytes and a correct header checksum: the reader must find what is wrong from the header alone.
 */
function rewriteHeader(path: string, edit: (header: Record<string, unknown>) => void): void {
  const buf = readFileSync(path);
  const len = buf.readUInt32LE(12);
  const header = JSON.parse(buf.toString("utf8", 20, 20 + len)) as Record<string, unknown>;
  const data = buf.subarray(Math.ceil((20 + len) / 64) * 64);
  edit(header);
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const pre = Buffer.alloc(20);
  buf.copy(pre, 0, 0, 12);
  pre.writeUInt32LE(json.length, 12);
  pre.writeUInt32LE(crc32(json), 16);
  const start = Math.ceil((20 + json.length) / 64) * 64;
  writeFileSync(path, Buffer.concat([pre, json, Buffer.alloc(start - 20 - json.length), data]));
}

const backend = new Backend(1);
const tmp = tempDir("steerlm-ckpt-");
afterAll(() => {
  backend.free();
  tmp.cleanup();
});

const header: CheckpointData["header"] = {
  format: "steerlm-sft-checkpoint",
  step: 3,
  totalSteps: 10,
  cursor: { epoch: 0, index: 6 },
  model: { vocabSize: 8 } as unknown as CheckpointData["header"]["model"],
  lora: null,
  baseModel: null,
  tokenizer: null,
  schema: "helpsteer2",
  settings: { lr: 1e-3 },
  tensors: [],
};

const cfg = resolveLlamaConfig({ vocabSize: 24, hiddenSize: 16, numLayers: 2, numHeads: 2, ffnSize: 32 });
const opts = {
  batchSize: 2,
  seqLen: 6,
  optimizer: plainAdam({ lr: 5e-3, warmupSteps: 2, totalSteps: 10, weightDecay: 0.1, maxGradNorm: 1 }),
};
/** Random sequences, drawn in a seeded order by a Batcher: the run's data cursor is part of the state. */
const examples = Array.from({ length: 7 }, (_, i) => {
  const rng = new Rng(i);
  const ids = Int32Array.from({ length: 6 }, () => rng.int(0, cfg.vocabSize - 1));
  return { ids, labels: ids };
});

describe("run checkpoints", () => {
  it("resume gives exactly the run that was never interrupted (weights, AdamW moments, step, data order)", async () => {
    const lora = { rank: 2, alpha: 4, targets: ["q", "v"] as const };
    const make = async () => {
      const model = await LlamaModel.create(backend, cfg, null, {
        seed: 1,
        lora: { ...lora, targets: [...lora.targets] },
      });
      return { model, tr: new Trainer(backend, model, opts), data: new Batcher(examples, 2, 6, 42) };
    };
    const step = (x: Awaited<ReturnType<typeof make>>) => x.tr.trainStep(x.data.next().batch);
    // uninterrupted: 5 steps
    const a = await make();
    const lossesA = Array.from({ length: 5 }, () => step(a).loss);
    // interrupted after 3, saved, resumed in a fresh model
    const b = await make();
    const metrics: RunMetric[] = Array.from({ length: 3 }, () => step(b)).map((r) => ({ ...r }));
    const run = join(tmp.path, "run");
    mkdirSync(join(run, "checkpoints"), { recursive: true });
    const ckHeader: Omit<CheckpointHeader, "tensors"> = {
      ...header,
      step: 3,
      cursor: b.data.cursor,
      model: cfg,
      lora: { ...lora, targets: [...lora.targets] },
    };
    const path = saveRunCheckpoint(run, ckHeader, b.tr, metrics, 2);
    expect(readdirSync(join(run, "checkpoints"))).toEqual(["step-000003.ckpt"]); // no temporary file left
    const c = await make();
    const resumed = resumeRun(path, run, c.tr, c.data);
    expect(resumed.checkpoint.header.step).toBe(3);
    expect(resumed.checkpoint.header.lora?.rank).toBe(2);
    expect(resumed.metrics.map((m) => m.loss)).toEqual(metrics.map((m) => m.loss));
    const lossesB = [...metrics.map((m) => m.loss), ...Array.from({ length: 2 }, () => step(c).loss)];
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
    saveTrainerCheckpoint(path, { ...header, model: cfg }, tr);
    const good = readFileSync(path);
    const bad = join(tmp.path, "bad.ckpt");
    writeFileSync(bad, Buffer.concat([Buffer.from("GGUF"), good.subarray(4)]));
    expect(() => readCheckpoint(bad)).toThrow(`${bad}: not a steerlm checkpoint`);
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(99, 8);
    writeFileSync(bad, v2);
    expect(() => readCheckpoint(bad)).toThrow("version 99 is not supported");
    expect(() => readCheckpointHeader(bad)).toThrow("version 99 is not supported");
    writeFileSync(bad, good.subarray(0, good.length - 100));
    expect(() => readCheckpoint(bad)).toThrow("truncated checkpoint");
    // the header alone (a resume's first checks) is whole in this file; cut inside it, it is refused too
    expect(readCheckpointHeader(bad).step).toBe(header.step);
    writeFileSync(bad, good.subarray(0, 40));
    expect(() => readCheckpointHeader(bad)).toThrow(`${bad}: truncated checkpoint header`);
    const flipped = Buffer.from(good);
    flipped[30] ^= 1;
    writeFileSync(bad, flipped);
    expect(() => readCheckpointHeader(bad)).toThrow("the header's checksum does not match");
    tr.free();
    model.free();
  });

  it("the file round-trips metadata, blobs and shapes, byte-identically", () => {
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
    expect(() => readCheckpointFile(join(tmp.path, "none.ckpt"))).toThrow(
      "cannot read the checkpoint: ENOENT",
    );
  });

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
    expect(readCheckpointHeader(path)).toEqual({ ...header, tensors: [] });
    expect(back.header.tensors).toEqual([
      { name: "a.weight", role: "weight", shape: [1] },
      { name: "z.weight", role: "weight", shape: [3, 2] },
      { name: "z.weight", role: "adam_m", shape: [3, 2] },
      { name: "z.weight", role: "adam_v", shape: [3, 2] },
    ]);
    expect(Array.from(back.weights.get("z.weight") as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(back.adamV.get("z.weight") as Float32Array)).toEqual(new Array(6).fill(0.25));
  });

  it("a checkpoint written before checksums (format version 1) still loads", () => {
    const v1 = fileURLToPath(new URL("../../test/fixtures/checkpoint/step-000003-v1.ckpt", import.meta.url));
    expect(readFileSync(v1).readUInt32LE(8)).toBe(1);
    const back = readCheckpoint(v1);
    expect(back.header.step).toBe(3);
    expect(back.header.tensors.map((t) => [t.name, t.role, t.shape])).toEqual([
      ["a.weight", "weight", [1]],
      ["z.weight", "weight", [3, 2]],
      ["z.weight", "adam_m", [3, 2]],
      ["z.weight", "adam_v", [3, 2]],
    ]);
    expect(Array.from(back.weights.get("z.weight") as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(back.adamM.get("z.weight") as Float32Array)).toEqual(new Array(6).fill(0.5));
  });

  it("a flipped byte in a blob or in the header is found by its checksum, naming the file and the blob", () => {
    const path = join(tmp.path, "flip.ckpt");
    writeCheckpointFile(path, { format: "x" }, [
      { name: "w", kind: "weight", data: Float32Array.from([1, 2, 3]) },
      { name: "w", kind: "m", data: Float32Array.from([4, 5, 6]) },
    ]);
    const good = readFileSync(path);
    const blobAt = good.length - 4; // the last value of w's AdamW m
    const bad = Buffer.from(good);
    bad[blobAt] = bad[blobAt]! ^ 0x01;
    writeFileSync(path, bad);
    expect(() => readCheckpointFile(path)).toThrow(`${path}: w (m): the checksum does not match`);
    const head = Buffer.from(good);
    head[30] = head[30]! ^ 0x20;
    writeFileSync(path, head);
    expect(() => readCheckpointFile(path)).toThrow(`${path}: the header's checksum does not match`);
  });

  it("a negative, fractional or huge blob length, or a bad offset, is a located error, not a RangeError", () => {
    const path = join(tmp.path, "len.ckpt");
    const blobs = [{ name: "w", kind: "weight" as const, data: Float32Array.from([1, 2, 3, 4]) }];
    writeCheckpointFile(path, { format: "x" }, blobs);
    for (const [field, value, what] of [
      ["length", -1, "length -1 is not a whole number ≥ 0"],
      ["length", 1.5, "length 1.5 is not a whole number ≥ 0"],
      ["length", 2 ** 40, "truncated checkpoint, or a damaged header: its data would end at byte"],
      ["offset", -64, "offset -64 is not a whole number ≥ 0"],
      ["offset", 2 ** 40, "truncated checkpoint, or a damaged header"],
    ] as const) {
      rewriteHeader(path, (h) => {
        (h.blobs as Array<Record<string, unknown>>)[0]![field] = value;
      });
      expect(() => readCheckpointFile(path), `${field} ${value}`).toThrow(`${path}: w (weight): ${what}`);
      writeCheckpointFile(path, { format: "x" }, blobs);
    }
    rewriteHeader(path, (h) => {
      h.blobs = [{ name: 3 }];
    });
    expect(() => readCheckpointFile(path)).toThrow(`${path}: blob 1: not a blob description`);
  });

  it("orders checkpoints by step, past step 999,999: resume takes the newest, pruning keeps the newest", () => {
    const run = join(tmp.path, "long-run");
    mkdirSync(join(run, "checkpoints"), { recursive: true });
    for (const step of [999_998, 1_000_000, 999_999, 12_345_678]) {
      expect(checkpointName(step)).toMatch(/^step-\d{6,}\.ckpt$/);
      writeFileSync(join(run, "checkpoints", checkpointName(step)), "");
    }
    expect(latestCheckpoint(run)).toBe(join(run, "checkpoints", "step-12345678.ckpt"));
    pruneCheckpoints(run, 2);
    expect(readdirSync(join(run, "checkpoints")).sort()).toEqual(["step-1000000.ckpt", "step-12345678.ckpt"]);
  });

  it("refuses another format (an engine trainer state of older versions) with the file name and a hint", () => {
    const path = join(tmp.path, "engine.ckpt");
    writeCheckpointFile(path, { format: "steerlm-train-state", step: 1 }, []);
    expect(() => readCheckpoint(path)).toThrow(
      `${path}: not a steerlm SFT checkpoint (format "steerlm-train-state"`,
    );
  });
});
