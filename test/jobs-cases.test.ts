import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENGINES, type Engine, exportJob } from "../src/jobs/index.js";
import { resolveSftConfig } from "../src/run/config.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, runCli, tempDir } from "./helpers.js";
import { at, exportTo, keyProblems, readJsonl, readYaml, writeDataset, writeHfDir } from "./jobs-helpers.js";

// What `steerlm export job` refuses (a setting an engine cannot express, named with the engine and its
// version, before anything is written), how it handles a missing --val, and multi-turn conversations.

const VERSION: Record<Engine, string> = { trl: "1.9.0", "nemo-rl": "0.7.0", "nemo-aligner": "0.7.0" };

/** The InputError an export throws; the job folder must not exist afterwards. */
async function refusal(promise: Promise<unknown>, output: string): Promise<InputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  expect(existsSync(output), `${output} was written`).toBe(false);
  return err as InputError;
}

const MULTI_TURN = JSON.stringify({
  system: "Be brief.",
  conversations: [
    { from: "User", value: "Hi", label: null },
    { from: "Assistant", value: "Hello!", label: "humor:3,verbosity:1" },
    { from: "User", value: "And a joke?", label: null },
    { from: "Assistant", value: "No.", label: "humor:0,verbosity:0" },
    { from: "User", value: "Bye", label: null },
  ],
  mask: "User",
  type: "VALUE_TO_TEXT",
});

describe.skipIf(!haveSharedData)("steerlm export job: refusals, validation, multi-turn", () => {
  const tmp = tempDir("steerlm-job-cases-");
  let data: ReturnType<typeof writeDataset>;
  let n = 0;
  const out = () => join(tmp.path, `job-${n++}`);
  beforeAll(() => {
    data = writeDataset(tmp.path);
  });
  afterAll(() => tmp.cleanup());

  it("refuses SteerLM 2.0's per-sample weights on every engine, naming the line", async () => {
    const lines = readFileSync(data.train, "utf8").split("\n");
    const weighted = JSON.parse(lines[2]);
    weighted.steerlm2 = {
      group: 0,
      sample: 0,
      n: 1,
      log_q: -1.5,
      log_prior: -1.25,
      log_p_attrs: -0.5,
      target_weight: 1.0,
    };
    lines[2] = JSON.stringify(weighted);
    const file = join(tmp.path, "steerlm2.jsonl");
    writeFileSync(file, lines.join("\n"));
    for (const engine of ENGINES) {
      const o = out();
      const err = await refusal(exportTo(engine, o, data.config, { data: file, weightDecay: 0 }), o);
      expect(err.message).toContain(
        `${file}:3: ${engine} ${VERSION[engine]} cannot express SteerLM 2.0's per-sample loss weights`,
      );
    }
  });

  it("refuses a frozen base storage and a new model (init) on every engine", async () => {
    for (const engine of ENGINES) {
      let o = out();
      const frozen = await refusal(exportTo(engine, o, data.config, { lora: true, frozen: "q8_0" }), o);
      expect(frozen.place.setting).toBe("frozen");
      expect(frozen.what).toContain(
        `${engine} ${VERSION[engine]} cannot express a frozen base stored as q8_0`,
      );
      o = out();
      const init = join(tmp.path, "model.yaml");
      writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\n");
      const resolved = resolveSftConfig({ data: data.train, init, output: o });
      const err = await refusal(exportJob(resolved, { engine }), o);
      expect(err.what).toContain("cannot express training a new model (init)");
    }
  });

  it("refuses a GGUF as the model, and a .nemo anywhere but NeMo-Aligner", async () => {
    const gguf = join(tmp.path, "base.gguf");
    writeFileSync(gguf, "GGUF");
    let o = out();
    const err = await refusal(exportTo("trl", o, data.config, { model: gguf }), o);
    expect(err.message).toContain("the engines load Hugging Face models, not GGUF files");
    const nemo = join(tmp.path, "base.nemo");
    writeFileSync(nemo, "");
    o = out();
    expect(
      (await refusal(exportTo("nemo-rl", o, data.config, { model: nemo, weightDecay: 0 }), o)).message,
    ).toContain("nemo-rl loads Hugging Face models, not .nemo checkpoints");
    o = out();
    await exportTo("nemo-aligner", o, data.config, { model: nemo });
    expect(at(readYaml(join(o, "sft.yaml")), "model.restore_from_path")).toBe(nemo);
  });

  it("refuses --allow-unlabeled, which a job's data cannot use, up front and by name", async () => {
    const o = out();
    const err = await refusal(exportTo("trl", o, data.config, { allowUnlabeled: true }), o);
    expect(err.place.setting).toBe("allowUnlabeled");
    expect(err.what).toContain("a job trains on labelled data only");
  });

  it("refuses what TRL cannot express: a non-integer LoRA alpha", async () => {
    const o = out();
    const err = await refusal(exportTo("trl", o, data.config, { lora: true, loraAlpha: 16.5 }), o);
    expect(err.place.setting).toBe("loraAlpha");
    expect(err.what).toContain("trl 1.9.0 cannot express a non-integer LoRA alpha (16.5)");
  });

  it("refuses what NeMo RL cannot express: LoRA, weight decay on matrices only, a warm-up under 2 steps", async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ lora: true, weightDecay: 0 }, "lora", "a LoRA run that comes back to steerlm"],
      [{}, "weightDecay", "weight decay on the matrices only"],
      [{ weightDecay: 0, warmupSteps: 1 }, "warmupSteps", "steerlm's schedule with 1 warm-up step"],
    ];
    for (const [flags, setting, what] of cases) {
      const o = out();
      const err = await refusal(exportTo("nemo-rl", o, data.config, flags), o);
      expect(err.place.setting).toBe(setting);
      expect(err.what).toContain(`nemo-rl 0.7.0 cannot express ${what}`);
    }
  });

  it("refuses what NeMo-Aligner cannot express: another epsilon, LoRA splitting a fused module or scaled, no validation", async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ eps: 1e-6 }, "eps", "an AdamW epsilon of 0.000001"],
      [{ lora: true, loraTargets: ["q", "v"] }, "loraTargets", "LoRA on q,v without k"],
      [
        { lora: true, loraTargets: ["q", "k", "v"], loraRank: 8, loraAlpha: 16 },
        "loraAlpha",
        "a LoRA alpha (16) other than the rank (8)",
      ],
      [{ val: null }, "val", "a run without validation data"],
      [{ warmupSteps: 0 }, "warmupSteps", "steerlm's schedule without warm-up"],
    ];
    for (const [flags, setting, what] of cases) {
      const o = out();
      const err = await refusal(exportTo("nemo-aligner", o, data.config, flags), o);
      expect(err.place.setting).toBe(setting);
      expect(err.what).toContain(`nemo-aligner 0.7.0 cannot express ${what}`);
    }
    const o = out();
    await exportTo("nemo-aligner", o, data.config, {
      lora: true,
      loraTargets: ["q", "k", "v", "o"],
      loraRank: 32,
      loraAlpha: 32,
    });
    expect(at(readYaml(join(o, "sft.yaml")), "model.peft")).toMatchObject({
      peft_scheme: "lora",
      lora_tuning: { target_modules: ["attention_qkv", "attention_dense"], adapter_dim: 32, alpha: 32 },
    });
    // the run's .nemo holds the adapter only: the way back merges it into the base before converting
    const readme = readFileSync(join(o, "README.md"), "utf8");
    expect(readme).toContain(
      "merge.py trainer.precision=32 \\\n  gpt_model_file=model.nemo lora_model_path=results/checkpoints/megatron_gpt_sft.nemo merged_model_path=merged.nemo",
    );
    expect(readme).toContain("--input_name_or_path merged.nemo");
  });

  it("writes only the engine's keys in the jobs of other settings too: LoRA, bf16, no validation or checkpoints", async () => {
    const hf = writeHfDir(join(tmp.path, "hf-control"), ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]);
    const lora = { lora: true, loraTargets: ["q", "k", "v", "o", "gate", "up", "down"], loraRank: 16 };
    const variants: Array<[Engine, Record<string, unknown>, { gpus?: number; nodes?: number }]> = [
      ["trl", { ...lora, loraAlpha: 32, computeType: "bf16", model: hf }, { gpus: 4, nodes: 2 }],
      ["trl", { val: null, checkpointEvery: 0, maxGradNorm: 0, steps: 10 }, { gpus: 1, nodes: 1 }],
      ["nemo-rl", { computeType: "bf16", weightDecay: 0, evalEvery: 0, checkpointEvery: 0 }, { gpus: 2 }],
      ["nemo-rl", { val: null, weightDecay: 0, maxGradNorm: 0, model: hf }, { gpus: 1, nodes: 1 }],
      ["nemo-aligner", { ...lora, loraAlpha: 16, computeType: "bf16" }, { gpus: 4, nodes: 2 }],
      ["nemo-aligner", { evalEvery: 0, checkpointEvery: 0, maxGradNorm: 0, model: hf }, { gpus: 2 }],
    ];
    for (const [engine, flags, size] of variants) {
      const o = out();
      await exportTo(engine, o, data.config, flags, size);
      expect(keyProblems(engine, o), `${engine} ${JSON.stringify(flags)}`).toEqual([]);
    }
    // TRL's LoRA modules are the transformers names of steerlm's targets, as the PEFT export writes them
    const t = out();
    await exportTo("trl", t, data.config, { ...lora, loraTargets: ["q", "v", "down"], loraAlpha: 32 });
    expect(readYaml(join(t, "sft.yaml")).lora_target_modules).toEqual(["q_proj", "v_proj", "down_proj"]);
    // the checker itself: a key no engine defines is reported
    const o = out();
    await exportTo("nemo-aligner", o, data.config);
    writeFileSync(join(o, "sft.yaml"), `${readFileSync(join(o, "sft.yaml"), "utf8")}bogus_key: 1\n`);
    expect(keyProblems("nemo-aligner", o)).toEqual(["sft.yaml: bogus_key"]);
  });

  it("refuses a folder that is not empty, and writes into an empty one", async () => {
    const o = out();
    mkdirSync(o);
    await exportTo("trl", o, data.config);
    expect(existsSync(join(o, "sft.yaml"))).toBe(true);
    const err = await exportTo("trl", o, data.config).catch((e: unknown) => e);
    expect((err as InputError).what).toBe("exists and is not empty");
  });

  it("without --val writes no validation and switches the engines' evaluation off", async () => {
    const trl = out();
    await exportTo("trl", trl, data.config, { val: null });
    expect(existsSync(join(trl, "data", "validation.jsonl"))).toBe(false);
    const config = readYaml(join(trl, "sft.yaml"));
    expect(config.eval_strategy).toBe("no");
    expect(config).not.toHaveProperty("dataset_test_split");
    const rl = out();
    await exportTo("nemo-rl", rl, data.config, { val: null, weightDecay: 0 });
    const rlConfig = readYaml(join(rl, "sft.yaml"));
    expect(at(rlConfig, "data.validation")).toBeUndefined();
    expect(at(rlConfig, "sft")).toMatchObject({ val_period: 0, val_at_end: false });
    expect(readFileSync(join(rl, "run.sh"), "utf8")).not.toContain("validation");
  });

  it("writes one TRL line per response, and NeMo RL messages ending with the last response", async () => {
    const file = join(tmp.path, "multi.jsonl");
    writeFileSync(file, `${MULTI_TURN}\n${MULTI_TURN}\n`);
    const flags = { data: file, val: null, batchSize: 1, warmupSteps: 2, weightDecay: 0, steps: 4 };
    const trl = out();
    await exportTo("trl", trl, data.config, flags);
    const lines = readJsonl(join(trl, "data", "train.jsonl")) as Array<{
      prompt: string;
      completion: string;
    }>;
    const answers = ["Hello!\n<extra_id_1>", "No.\n<extra_id_1>"];
    expect(lines.map((l) => l.completion)).toEqual([...answers, ...answers]);
    expect(lines[1].prompt).toBe(
      "<extra_id_0>System\nBe brief.\n<extra_id_1>User\nHi\n<extra_id_1>Assistant\n<extra_id_2>humor:3,verbosity:1\nHello!\n" +
        "<extra_id_1>User\nAnd a joke?\n<extra_id_1>Assistant\n<extra_id_2>humor:0,verbosity:0\n",
    );
    const rl = out();
    await exportTo("nemo-rl", rl, data.config, flags);
    const [first] = readJsonl(join(rl, "data", "train.jsonl")) as Array<{
      messages: Array<{ role: string; content: string }>;
    }>;
    expect(first.messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(first.messages[2].content).toBe(
      "User\nAnd a joke?\n<extra_id_1>Assistant\n<extra_id_2>humor:0,verbosity:0\n",
    );
  });

  it("tells in NeMo-Aligner's README how many conversations it masks as text-to-value", async () => {
    const file = join(tmp.path, "t2v.jsonl");
    writeFileSync(file, `${MULTI_TURN.replace("VALUE_TO_TEXT", "TEXT_TO_VALUE")}\n${MULTI_TURN}\n`);
    const o = out();
    await exportTo("nemo-aligner", o, data.config, {
      data: file,
      val: file,
      batchSize: 1,
      warmupSteps: 2,
      steps: 4,
    });
    expect(readFileSync(join(o, "README.md"), "utf8")).toContain(
      '1 training conversations have `"type": "TEXT_TO_VALUE"`: NeMo trains their value lines',
    );
  });

  it("prints a refusal as the flag the user typed, without a stack trace, and writes nothing", async () => {
    const o = out();
    const r = await runCli(
      [
        "export",
        "job",
        "--engine",
        "trl",
        "--config",
        data.config,
        "--model",
        "meta-llama/Llama-3.2-1B",
        "--lora",
        "--lora-alpha",
        "16.5",
        "-o",
        o,
      ],
      { cwd: tmp.path },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "steerlm: --lora-alpha: trl 1.9.0 cannot express a non-integer LoRA alpha (16.5)",
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(o)).toBe(false);
    const ok = await runCli(
      [
        "export",
        "job",
        "--engine",
        "nemo-aligner",
        "--config",
        data.config,
        "--model",
        "meta-llama/Llama-3.2-1B",
        "-o",
        o,
        "--gpus",
        "4",
      ],
      { cwd: tmp.path },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(`wrote ${o} for NeMo-Aligner 0.7.0 (60 steps)`);
    expect(readFileSync(join(o, "README.md"), "utf8")).toContain("trainer.devices=4");
  });
});
