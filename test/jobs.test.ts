import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadSchema } from "../src/data/attributes.js";
import { convertFile } from "../src/data/jobs.js";
import { readRecords } from "../src/data/read.js";
import { type DataRecord, toConversation } from "../src/data/record.js";
import { renderConversation } from "../src/data/template.js";
import { haveSharedData, sharedData, tempDir } from "./helpers.js";
import {
  at,
  engineFixture,
  exportTo,
  keyProblems,
  overrides,
  pythonYaml,
  readJsonl,
  readYaml,
  writeDataset,
  writeHfDir,
} from "./jobs-helpers.js";
import { type Schema, validate } from "./json-schema.js";

// The job folders of `steerlm export job`, one per engine, from the real NeMo-Aligner sample and a
// `steerlm sft` config: every emitted key is one the engine defines (key lists taken from the engines'
// source, test/fixtures/engines/), every data line validates against the engine's documented schema, and
// the data carries the loss exactly where steerlm's own training text does.

interface DataSchema {
  version: string;
  schema: Schema;
}

/** Records as steerlm reads them, with the schema the jobs use. */
async function records(path: string): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of readRecords(path, { format: "steerlm", schema: loadSchema("steerlm") })) out.push(r);
  return out;
}

function files(dir: string, sub = ""): string[] {
  return readdirSync(join(dir, sub)).flatMap((f) =>
    statSync(join(dir, sub, f)).isDirectory() ? files(dir, join(sub, f)) : [join(sub, f)],
  );
}

describe.skipIf(!haveSharedData)("steerlm export job", () => {
  const tmp = tempDir("steerlm-jobs-");
  let data: ReturnType<typeof writeDataset>;
  let train: DataRecord[];
  let val: DataRecord[];
  const dirs = { trl: "", "nemo-rl": "", "nemo-aligner": "" };
  beforeAll(async () => {
    data = writeDataset(tmp.path);
    train = await records(data.train);
    val = await records(data.val);
    dirs.trl = join(tmp.path, "trl");
    dirs["nemo-rl"] = join(tmp.path, "nemo-rl");
    dirs["nemo-aligner"] = join(tmp.path, "nemo-aligner");
    await exportTo("trl", dirs.trl, data.config, {}, { gpus: 8, nodes: 2 });
    await exportTo("nemo-rl", dirs["nemo-rl"], data.config, { weightDecay: 0 }, { gpus: 4, nodes: 2 });
    await exportTo("nemo-aligner", dirs["nemo-aligner"], data.config, {}, { gpus: 8, nodes: 1 });
  });
  afterAll(() => tmp.cleanup());

  describe("trl", () => {
    it("writes only keys TRL 1.9.0's sft command defines, none deprecated", () => {
      const config = readYaml(join(dirs.trl, "sft.yaml"));
      expect(keyProblems("trl", dirs.trl)).toEqual([]);
      expect(config).toMatchObject({
        model_name_or_path: "meta-llama/Llama-3.2-1B",
        max_steps: Math.ceil(480 / 8),
        gradient_accumulation_steps: 2,
        lr_scheduler_type: "cosine_warmup_with_min_lr",
        lr_scheduler_kwargs: { min_lr_rate: 0.1 },
        bf16: false,
        use_peft: false,
        dataset_test_split: "validation",
        eval_steps: 20,
      });
    });

    it("writes accelerate configs with accelerate 1.14.0's keys, and launch flags TRL or accelerate take", () => {
      expect(existsSync(join(dirs.trl, "accelerate/zero3.yaml"))).toBe(true);
      expect(existsSync(join(dirs.trl, "accelerate/fsdp2.yaml"))).toBe(true);
      const readme = readFileSync(join(dirs.trl, "README.md"), "utf8");
      const commands = readme.split("\n").filter((l) => l.includes("trl sft"));
      expect(commands.length).toBeGreaterThanOrEqual(2);
      // the accelerate files' keys and the commands' flags, in keyProblems
      expect(keyProblems("trl", dirs.trl)).toEqual([]);
      // 8 GPUs share the 8 sequences of an update: 1 each, no accumulation
      expect(readme).toContain(
        "--per_device_train_batch_size 1 --per_device_eval_batch_size 1 --gradient_accumulation_steps 1",
      );
      expect(readme).toContain("do not split over 16 GPUs");
    });

    it("writes each response as a completion after steerlm's inference prompt for it", () => {
      const lines = readJsonl(join(dirs.trl, "data", "train.jsonl")) as Array<{
        prompt: string;
        completion: string;
      }>;
      const schema = engineFixture<DataSchema>("trl-data.json").schema;
      expect(lines.flatMap((l, i) => validate(schema, l, `line ${i + 1}`))).toEqual([]);
      const expected = train.flatMap((r) => {
        const conv = toConversation(r, loadSchema("steerlm"));
        const acsft = renderConversation(conv, "acsft");
        const answers = conv.turns.flatMap((t, i) => (t.role === "assistant" ? [i] : []));
        return answers.map((turn, k) => {
          const [start, end] = acsft.lossSpans[k];
          const prompt = renderConversation(
            { system: conv.system, turns: conv.turns.slice(0, turn) },
            "inference",
            {
              values: conv.turns[turn].values ?? "",
            },
          ).text;
          return { prompt, completion: acsft.text.slice(start, end), upToEnd: acsft.text.slice(0, end) };
        });
      });
      expect(lines.length).toBe(expected.length);
      lines.forEach((l, i) => {
        expect(l.prompt).toBe(expected[i].prompt);
        expect(l.prompt + l.completion).toBe(expected[i].upToEnd);
        expect(l.completion.endsWith("\n<extra_id_1>")).toBe(true);
      });
    });

    it("writes the first evalBatches × batchSize validation conversations", () => {
      const lines = readJsonl(join(dirs.trl, "data", "validation.jsonl"));
      expect(lines.length).toBe(2 * 4);
      const first = renderConversation(toConversation(val[0], loadSchema("steerlm")), "acsft");
      expect((lines[0] as { prompt: string }).prompt).toBe(first.text.slice(0, first.lossSpans[0][0]));
    });
  });

  describe("nemo-rl", () => {
    it("writes a complete config with NeMo RL 0.7.0's keys, torch's arguments and its required keys", () => {
      const config = readYaml(join(dirs["nemo-rl"], "sft.yaml"));
      // the config's keys, torch's arguments under kwargs and the required keys, in keyProblems
      expect(keyProblems("nemo-rl", dirs["nemo-rl"])).toEqual([]);
      expect(at(config, "policy.scheduler")).toEqual([
        {
          name: "torch.optim.lr_scheduler.LinearLR",
          kwargs: { start_factor: 1 / 20, end_factor: 1, total_iters: 19 },
        },
        { name: "torch.optim.lr_scheduler.CosineAnnealingLR", kwargs: { T_max: 60 - 20, eta_min: 1e-5 } },
        { milestones: [19] },
      ]);
      expect(at(config, "data.train")).toEqual({
        dataset_name: "openai_format",
        data_path: "data/train.jsonl",
        processor: "sft_processor",
      });
      expect(at(config, "data.validation.processor")).toBe("sft_processor");
      expect(at(config, "policy.tokenizer.chat_template")).toBe(
        "{% for message in messages %}{{ message['content'] }}{% endfor %}",
      );
    });

    it("overrides only keys of the config, in run.sh and in the README's commands", () => {
      const text =
        readFileSync(join(dirs["nemo-rl"], "run.sh"), "utf8") +
        readFileSync(join(dirs["nemo-rl"], "README.md"), "utf8");
      const keys = overrides(text);
      expect(keys).toContain("data.validation.data_path");
      expect(keys).toContain("policy.train_micro_batch_size");
      expect(keyProblems("nemo-rl", dirs["nemo-rl"])).toEqual([]);
      expect(statSync(join(dirs["nemo-rl"], "run.sh")).mode & 0o111).not.toBe(0);
    });

    it("writes messages whose assistant contents are steerlm's loss spans and whose text is steerlm's", () => {
      const lines = readJsonl(join(dirs["nemo-rl"], "data", "train.jsonl")) as Array<{
        messages: Array<{ role: string; content: string }>;
      }>;
      const schema = engineFixture<DataSchema>("nemo-rl-data.json").schema;
      expect(lines.flatMap((l, i) => validate(schema, l, `line ${i + 1}`))).toEqual([]);
      expect(lines.length).toBe(train.length);
      lines.forEach((l, i) => {
        const acsft = renderConversation(toConversation(train[i], loadSchema("steerlm")), "acsft");
        const spans = acsft.lossSpans.map(([s, e]) => acsft.text.slice(s, e));
        expect(l.messages.filter((m) => m.role === "assistant").map((m) => m.content)).toEqual(spans);
        expect(l.messages.map((m) => m.content).join("")).toBe(
          acsft.text.slice(0, acsft.lossSpans.at(-1)?.[1]),
        );
        expect(l.messages.at(-1)?.role).toBe("assistant");
      });
    });
  });

  describe("nemo-aligner", () => {
    it("writes gpt_sft.yaml's keys of NeMo-Aligner 0.7.0, in the README's overrides too", () => {
      const config = readYaml(join(dirs["nemo-aligner"], "sft.yaml"));
      const keys = overrides(readFileSync(join(dirs["nemo-aligner"], "README.md"), "utf8"));
      expect(keys).toContain("trainer.devices");
      expect(keyProblems("nemo-aligner", dirs["nemo-aligner"])).toEqual([]);
      expect(at(config, "model.optim.sched")).toEqual({
        name: "CosineAnnealing",
        warmup_steps: 19,
        constant_steps: 0,
        min_lr: 1e-5,
        max_steps: 59,
      });
      expect(at(config, "model.data.chat_prompt_tokens")).toEqual({
        system_turn_start: "<extra_id_0>",
        turn_start: "<extra_id_1>",
        label_start: "<extra_id_2>",
        end_of_turn: "\n",
        end_of_name: "\n",
      });
    });

    it("writes the data byte for byte as steerlm's NeMo export, valid for its schema", async () => {
      const exported = join(tmp.path, "converted.jsonl");
      await convertFile(data.train, exported, "steerlm");
      expect(readFileSync(join(dirs["nemo-aligner"], "data", "train.jsonl"))).toEqual(readFileSync(exported));
      const schema = engineFixture<DataSchema>("nemo-aligner-data.json").schema;
      const lines = readJsonl(join(dirs["nemo-aligner"], "data", "validation.jsonl"));
      expect(lines.length).toBe(8);
      expect(lines.flatMap((l, i) => validate(schema, l, `line ${i + 1}`))).toEqual([]);
    });
  });

  it("writes YAML that PyYAML reads as the same values (1.0e-8, not the string 1e-8)", (ctx) => {
    const yamlFiles = Object.values(dirs).flatMap((d) =>
      files(d)
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => join(d, f)),
    );
    const python = pythonYaml(yamlFiles);
    if (python === null) return ctx.skip();
    expect(python).toEqual(yamlFiles.map((f) => parse(readFileSync(f, "utf8"))));
    expect(readFileSync(join(dirs.trl, "sft.yaml"), "utf8")).toContain("adam_epsilon: 1.0e-8");
  });

  it("tells in each README the engine version, every setting, and the way back to a GGUF", () => {
    for (const [engine, version] of [
      ["trl", "TRL 1.9.0"],
      ["nemo-rl", "NeMo RL 0.7.0"],
      ["nemo-aligner", "NeMo-Aligner 0.7.0"],
    ] as const) {
      const readme = readFileSync(join(dirs[engine], "README.md"), "utf8");
      expect(readme).toContain(`# SteerLM SFT job for ${version}`);
      // the engines hand back no steerlm key: the job's own schema steers the converted model
      expect(readme).toMatch(
        /steerlm model convert \S+ --schema (<this folder>\/)?schema\.json -o model\.gguf/,
      );
      expect(loadSchema(join(dirs[engine], "schema.json"))).toEqual(loadSchema("steerlm"));
      expect(readme).toMatch(/^- `schema\.json` \(\d+ lines\)$/m);
      expect(readme).toContain("steerlm serve -m model.gguf");
      for (const setting of ["lr", "warmupSteps", "minLrRatio", "loraAlpha", "threads", "keepCheckpoints"]) {
        expect(readme, `${engine}: ${setting}`).toMatch(new RegExp(`^\\| ${setting} \\|`, "m"));
      }
    }
  });

  it("sets TRL's EOS to <extra_id_1> when the model's tokenizer has it", async () => {
    const hf = writeHfDir(join(tmp.path, "hf"), ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]);
    const out = join(tmp.path, "trl-local");
    await exportTo("trl", out, data.config, { model: hf });
    const config = readYaml(join(out, "sft.yaml"));
    expect(config.eos_token).toBe("<extra_id_1>");
    expect(config.model_name_or_path).toBe(hf);
    expect(readFileSync(join(out, "README.md"), "utf8")).not.toContain("must have `<extra_id_0>`");
  });

  it("sets NeMo RL's add_bos as the model's tokenizer adds BOS, and says so where it cannot know", async () => {
    // GPT-2's real tokenizer has a BOS (<|endoftext|>) that it never adds; NeMo RL would prepend it anyway
    const gpt2 = join(tmp.path, "gpt2");
    cpSync(sharedData("tokenizers", "gpt2"), gpt2, { recursive: true });
    writeFileSync(join(gpt2, "config.json"), JSON.stringify({ architectures: ["GPT2LMHeadModel"] }));
    const llama = writeHfDir(join(tmp.path, "llama-like"), ["<s>"]);
    writeFileSync(
      join(llama, "tokenizer_config.json"),
      JSON.stringify({ add_bos_token: true, bos_token: "<s>" }),
    );
    const cases = [
      [gpt2, false],
      [llama, true],
    ] as const;
    for (const [model, addBos] of cases) {
      const out = join(tmp.path, `nemo-rl-bos-${addBos}`);
      await exportTo("nemo-rl", out, data.config, { model, weightDecay: 0 });
      expect((readYaml(join(out, "sft.yaml")).data as { add_bos: boolean }).add_bos, model).toBe(addBos);
      expect(readFileSync(join(out, "README.md"), "utf8")).not.toContain(
        "could not read the model's tokenizer",
      );
    }
    // a hub id: unknown here, NeMo RL's default, and the README says what to change
    expect((readYaml(join(dirs["nemo-rl"], "sft.yaml")).data as { add_bos: boolean }).add_bos).toBe(true);
    expect(readFileSync(join(dirs["nemo-rl"], "README.md"), "utf8")).toContain(
      "The job could not read the model's tokenizer, so `data.add_bos` is true",
    );
  });
});
