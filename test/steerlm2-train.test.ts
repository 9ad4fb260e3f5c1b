import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSchema } from "../src/data/attributes.js";
import { readRecords } from "../src/data/read.js";
import type { DataRecord } from "../src/data/record.js";
import { Backend } from "../src/ggml/backend.js";
import { SteerableModel } from "../src/inference/model.js";
import { LlamaModel } from "../src/model/model.js";
import { latestCheckpoint, readCheckpoint } from "../src/run/checkpoint.js";
import { encodeRecords, packBatch } from "../src/run/data.js";
import { setupFromGguf } from "../src/run/setup.js";
import { sampleLine } from "../src/steerlm2/format.js";
import { Trainer } from "../src/train/trainer.js";
import { plainAdam, repoRoot, runCli, tempDir } from "./helpers.js";
import { tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// SteerLM 2.0 training through the real CLI: a tiny SFT model trained here, a steerlm2 file written here
// (n = 2 responses per prompt, one with target weight 0.9 and one with 0.1; log_q from Trainer.logProbs on
// the exported SFT GGUF, through the tokenization training uses), then `steerlm steerlm2 train`.
const SEQ = 384;
const N = 2;
const GROUPS = 8;
const HIGH = 0.9;

const tmp = tempDir("steerlm-steerlm2-train-");
const sftRun = join(tmp.path, "sft");
const sftGguf = join(tmp.path, "sft.gguf");
const samples = join(tmp.path, "samples.jsonl");
/** Per line of the samples file: its target weight. */
const targets: number[] = [];
const records: DataRecord[] = [];
let logQ: number[] = [];

/** log-likelihood of each record's response (SFT's loss tokens) under a GGUF, one sequence at a time. */
async function logLikelihoods(gguf: string, recs: readonly DataRecord[], scratch: string): Promise<number[]> {
  mkdirSync(scratch, { recursive: true });
  const setup = await setupFromGguf(gguf, scratch);
  const enc = encodeRecords(recs, {
    tokenizer: setup.tokenizer,
    bos: setup.bos,
    schema: loadSchema("steerlm"),
    seqLen: SEQ,
  });
  expect(enc.truncated + enc.dropped, `longest ${enc.longest}`).toBe(0);
  const backend = new Backend(1);
  const model = await LlamaModel.create(backend, setup.config, setup.source, { seed: 1 });
  const trainer = new Trainer(backend, model, {
    batchSize: 1,
    seqLen: SEQ,
    optimizer: plainAdam({ lr: 0 }),
  });
  const out = enc.examples.map(
    (ex) => trainer.logProbs(packBatch([ex], SEQ, setup.tokenizer.eosId ?? 0).batch).sequences[0] as number,
  );
  trainer.free();
  model.free();
  backend.free();
  await setup.tokenizer.dispose();
  return out;
}

let inputs: ReturnType<typeof tinySftInputs>;

beforeAll(async () => {
  inputs = tinySftInputs(tmp.path);
  const sft = await runCli(tinySftArgs(inputs, sftRun, ["--steps", "30"]));
  expect(sft.code, sft.stderr).toBe(0);
  expect((await runCli(["export", "gguf", sftRun, "-o", sftGguf])).code).toBe(0);

  // prompts: single-turn conversations; group g pairs its own response with the next group's response
  const convs: DataRecord[] = [];
  for await (const r of readRecords(inputs.train, { format: "steerlm", schema: "steerlm" }))
    if (r.turns.length === 2 && r.turns[1]?.labels) convs.push(r);
  // the shortest ones: a 320-id tokenizer spends about a token per character
  const size = (r: DataRecord) => r.turns.reduce((n, t) => n + t.text.length, 0);
  const picked = convs.sort((x, y) => size(x) - size(y)).slice(0, GROUPS + 1);
  for (let g = 0; g < GROUPS; g++) {
    const own = picked[g] as DataRecord;
    const other = picked[g + 1] as DataRecord;
    for (const response of [own, other]) {
      const turns = [
        own.turns[0],
        { ...(own.turns[1] as DataRecord["turns"][number]), text: response.turns[1]?.text ?? "" },
      ];
      records.push({ system: own.system, turns: turns as DataRecord["turns"], extra: new Map() });
    }
    // which sample is preferred alternates, so "its own response" is not what the training learns
    targets.push(...(g % 2 === 0 ? [HIGH, 1 - HIGH] : [1 - HIGH, HIGH]));
  }
  logQ = await logLikelihoods(sftGguf, records, join(tmp.path, "scratch-q"));
  const lines = records.map((rec, i) =>
    sampleLine(rec, {
      group: Math.floor(i / N),
      sample: i % N,
      n: N,
      logQ: logQ[i] as number,
      logPrior: 0,
      logPAttrs: Math.log(targets[i] as number) + (logQ[i] as number),
      targetWeight: targets[i] as number,
    }),
  );
  writeFileSync(samples, `${lines.join("\n")}\n`);
}, 180_000);
afterAll(() => tmp.cleanup());

const trainArgs = (model: string, out: string, extra: string[] = []) => [
  "steerlm2",
  "train",
  "--data",
  samples,
  "--model",
  model,
  "--seq-len",
  String(SEQ),
  "--batch-size",
  "4",
  "--threads",
  "1",
  "--lr",
  "0.001",
  "--warmup-steps",
  "2",
  "--steps",
  "24",
  "-o",
  out,
  ...extra,
];

describe("steerlm steerlm2 train", () => {
  const run = join(tmp.path, "run");

  it("raises the likelihood of high-target samples relative to low-target ones; the GGUF loads", async () => {
    // from the SFT run directory (exported once into the run as sft-init.gguf)
    const r = await runCli(trainArgs(sftRun, run));
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(run, "sft-init.gguf"))).toBe(true);
    expect(r.stderr).toContain("steerlm2: 8 groups of n = 2 samples, 2 groups per batch");
    const metrics = readFileSync(join(run, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; meanAbsC: number; drift: number });
    expect(metrics).toHaveLength(24);
    // step 1: Q_θ = Q', so the drift is 0 up to float summation order, and |c| = |w' − 1/2| = 0.4
    expect(Math.abs((metrics[0] as { drift: number }).drift)).toBeLessThan(1e-3);
    expect((metrics[0] as { meanAbsC: number }).meanAbsC).toBeCloseTo(HIGH - 0.5, 3);
    const last = metrics.at(-1) as { meanAbsC: number; drift: number };
    expect(last.meanAbsC).toBeLessThan(HIGH - 0.5); // the baseline w moved towards the targets
    // the same command with --resume is accepted: its --model is the run directory the run exported, not a
    // changed setting (the run is finished: nothing more to do)
    const resumed = await runCli([...trainArgs(sftRun, run), "--resume"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n")).toHaveLength(24);

    const out = join(tmp.path, "steerlm2.gguf");
    const exp = await runCli(["export", "gguf", run, "-o", out]);
    expect(exp.code, exp.stderr).toBe(0);
    const after = await logLikelihoods(out, records, join(tmp.path, "scratch-after"));
    const delta = after.map((x, i) => x - (logQ[i] as number));
    const mean = (want: number) => {
      const d = delta.filter((_, i) => targets[i] === want);
      return d.reduce((a, x) => a + x, 0) / d.length;
    };
    const gap = mean(HIGH) - mean(1 - HIGH);
    process.stderr.write(
      `steerlm2 train: mean Δ log-likelihood high ${mean(HIGH).toFixed(3)}, low ${mean(1 - HIGH).toFixed(3)}; ` +
        `step 1 drift ${metrics[0]?.drift.toExponential(2)} |c| ${metrics[0]?.meanAbsC.toFixed(4)}, ` +
        `step 24 drift ${last.drift.toFixed(3)} |c| ${last.meanAbsC.toFixed(4)}\n`,
    );
    expect(gap).toBeGreaterThan(1);
    // within each group, the preferred sample gained on the other one
    let won = 0;
    for (let g = 0; g < GROUPS; g++) {
      const [a, b] = [delta[2 * g] as number, delta[2 * g + 1] as number];
      if ((targets[2 * g] === HIGH ? a - b : b - a) > 0) won++;
    }
    expect(won).toBe(GROUPS);

    const model = await SteerableModel.load({ modelPath: out });
    try {
      const g = await model.generate({
        conversation: {
          system: "Answer the user's question.",
          turns: [{ role: "user", text: "What is 2 plus 3?" }],
        },
        attributes: { verbosity: 0 },
        maxTokens: 8,
      });
      expect(g.usage.completionTokens).toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
  }, 180_000);

  it("refuses a batch that is not whole groups, and `steerlm sft --resume` on a steerlm2 run", async () => {
    const bad = await runCli(trainArgs(sftGguf, join(tmp.path, "bad"), ["--batch-size", "3"]));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("batch size 3 is not a multiple of the group size n = 2");
    const none = await runCli(["steerlm2", "train", "--data", samples, "-o", join(tmp.path, "none")]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("steerlm: --model: no starting model");
    expect(none.stderr).not.toContain("--init");
    const sft = await runCli(["sft", "--resume", "-o", run]);
    expect(sft.code).toBe(1);
    expect(sft.stderr).toContain("the run was trained with the steerlm2 objective, not sft");
    // and the reverse, said before steerlm2's own checks of the SFT run's settings and data
    const back = await runCli(["steerlm2", "train", "--resume", "-o", sftRun]);
    expect(back.code).toBe(1);
    expect(back.stderr).toContain("the run was trained with the sft objective, not steerlm2");
  });
});

describe("steerlm steerlm2 sample → steerlm steerlm2 train", () => {
  it("trains on the sampler's file: at step 1 Q_θ = Q', so log Q_θ − log_q is 0 and w = 1/n", async () => {
    const apm = join(tmp.path, "apm");
    const a = await runCli(
      ["apm", "train", "--data", inputs.train, "--init", inputs.init, "--tokenizer-vocab-size", "300"].concat(
        ["--seq-len", "96", "--batch-size", "4", "--threads", "1", "--steps", "20", "-o", apm],
      ),
    );
    expect(a.code, a.stderr).toBe(0);
    const file = join(tmp.path, "sampled.jsonl");
    const s = await runCli(
      ["steerlm2", "sample", "-m", sftGguf, "--apm", apm, "--data", inputs.train, "-o", file].concat([
        "--limit",
        "4",
        "--samples",
        "2",
        "--max-tokens",
        "24",
        "--threads",
        "1",
      ]),
    );
    expect(s.code, s.stderr).toBe(0);
    const lines = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { steerlm2: { target_weight: number } });
    expect(lines.length).toBeGreaterThanOrEqual(4);
    // one batch holds every group, so step 1's mean |c| is over the whole file
    const run = join(tmp.path, "from-sampler");
    const t = await runCli([
      ...trainArgs(sftGguf, run, ["--data", file, "--batch-size", String(lines.length), "--steps", "3"]),
    ]);
    expect(t.code, t.stderr).toBe(0);
    const first = JSON.parse(readFileSync(join(run, "metrics.jsonl"), "utf8").split("\n")[0] as string) as {
      meanAbsC: number;
      drift: number;
    };
    expect(Math.abs(first.drift)).toBeLessThan(1e-4);
    const want = lines.reduce((acc, l) => acc + Math.abs(l.steerlm2.target_weight - 1 / N), 0) / lines.length;
    expect(first.meanAbsC).toBeCloseTo(want, 4);

    // LoRA too: the F32 base stays f32 (a LoRA run's usual bf16 base would start Q_θ away from Q')
    const lora = join(tmp.path, "from-sampler-lora");
    const l = await runCli([
      ...trainArgs(sftGguf, lora, ["--data", file, "--batch-size", String(lines.length), "--steps", "2"]),
      ...["--lora", "--lora-rank", "4"],
    ]);
    expect(l.code, l.stderr).toBe(0);
    const settings = JSON.parse(readFileSync(join(lora, "sft-config.json"), "utf8")) as { frozen: string };
    expect(settings.frozen).toBe("f32");
    const loraFirst = JSON.parse(
      readFileSync(join(lora, "metrics.jsonl"), "utf8").split("\n")[0] as string,
    ) as {
      drift: number;
    };
    expect(Math.abs(loraFirst.drift)).toBeLessThan(1e-4);
  }, 120_000);
});

/** Starts the real CLI, waits until `file` exists, sends `signal`; resolves with how the process ended. */
function runUntil(args: string[], file: string, signal: NodeJS.Signals): Promise<NodeJS.Signals | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
      stdio: ["ignore", "ignore", "ignore"],
    });
    const poll = setInterval(() => {
      if (existsSync(file)) {
        clearInterval(poll);
        child.kill(signal);
      }
    }, 2);
    child.on("error", reject);
    child.on("close", (_code, sig) => {
      clearInterval(poll);
      resolve(sig);
    });
  });
}

describe("steerlm steerlm2 train --resume after kill -9", () => {
  it("ends with byte-identical weights, optimiser state and metrics to an uninterrupted run", async () => {
    const every = ["--checkpoint-every", "3"];
    const straight = join(tmp.path, "straight");
    const full = await runCli(trainArgs(sftGguf, straight, every));
    expect(full.code, full.stderr).toBe(0);

    const killed = join(tmp.path, "killed");
    const sig = await runUntil(
      trainArgs(sftGguf, killed, every),
      join(killed, "checkpoints", "step-000003.ckpt"),
      "SIGKILL",
    );
    expect(sig).toBe("SIGKILL");
    const at = readCheckpoint(latestCheckpoint(killed) as string).header.step;
    expect(at).toBeGreaterThanOrEqual(3);
    expect(at).toBeLessThan(24);
    const resumed = await runCli(["steerlm2", "train", "--resume", "-o", killed]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`resumed at step ${at}`);

    const a = readCheckpoint(latestCheckpoint(straight) as string);
    const b = readCheckpoint(latestCheckpoint(killed) as string);
    expect(b.header.step).toBe(24);
    expect(b.header.cursor).toEqual(a.header.cursor);
    for (const [role, ma, mb] of [
      ["weight", a.weights, b.weights],
      ["adam_m", a.adamM, b.adamM],
      ["adam_v", a.adamV, b.adamV],
    ] as const) {
      expect([...mb.keys()]).toEqual([...ma.keys()]);
      for (const [name, wa] of ma)
        expect(
          Buffer.from((mb.get(name) as Float32Array).buffer).equals(Buffer.from(wa.buffer)),
          `${role} ${name}`,
        ).toBe(true);
    }
    // the per-step numbers (loss, |c|, drift) of the resumed steps are the uninterrupted run's
    expect(readFileSync(join(killed, "metrics.jsonl"), "utf8")).toBe(
      readFileSync(join(straight, "metrics.jsonl"), "utf8"),
    );
  }, 180_000);
});
