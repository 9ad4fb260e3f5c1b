import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { formatSettings, readModelInit, resolveSftConfig } from "./config.js";
import { SFT_DEFAULTS } from "./settings.js";

describe("sft config: defaults < config file < flags", () => {
  const tmp = tempDir("steerlm-sftcfg-");
  afterAll(() => tmp.cleanup());
  const file = (name: string, text: string) => {
    const p = join(tmp.path, name);
    writeFileSync(p, text);
    return p;
  };

  it("takes the file over the defaults and the flags over the file, paths relative to the file", () => {
    const cfg = file(
      "sft.yaml",
      "data: data/train.jsonl\ninit: model.yaml\nlr: 0.01\nbatchSize: 4\nloraTargets: [q, k]\n",
    );
    const r = resolveSftConfig({ lr: 0.02, output: "/abs/run" }, cfg);
    expect(r.config.lr).toBe(0.02);
    expect(r.sources.lr).toBe("flag");
    expect(r.config.batchSize).toBe(4);
    expect(r.sources.batchSize).toBe("config");
    expect(r.config.seqLen).toBe(SFT_DEFAULTS.seqLen);
    expect(r.sources.seqLen).toBe("default");
    expect(r.config.data).toBe(join(tmp.path, "data/train.jsonl"));
    expect(r.config.init).toBe(join(tmp.path, "model.yaml"));
    expect(r.config.output).toBe("/abs/run");
    expect(r.config.loraTargets).toEqual(["q", "k"]);
    const lines = formatSettings(r);
    expect(lines).toHaveLength(Object.keys(r.config).length);
    expect(lines.find((l) => l.includes(" lr "))).toMatch(/lr\s+0\.02\s+\(flag\)/);
    expect(lines.find((l) => l.includes(" batchSize "))).toMatch(/\(config file\)/);
  });

  it("checks frozen: one of the storage types, and only with LoRA (file, line, field)", () => {
    const ok = resolveSftConfig(
      {},
      file("q8.yaml", "data: d.jsonl\noutput: run\nmodel: b.gguf\nlora: true\nfrozen: q8_0\n"),
    );
    expect(ok.config.frozen).toBe("q8_0");
    expect(
      resolveSftConfig({ lora: true }, file("auto.yaml", "data: d\noutput: r\nmodel: b\n")).config.frozen,
    ).toBe(null);
    const typo = file("typo.yaml", "data: d.jsonl\noutput: run\nmodel: b.gguf\nlora: true\nfrozen: q4_k\n");
    expect(() => resolveSftConfig({}, typo)).toThrow(
      /typo\.yaml:5: frozen: expected one of f32, f16, bf16, q8_0/,
    );
    const noLora = file("nolora.yaml", "data: d.jsonl\noutput: run\nmodel: b.gguf\nfrozen: f16\n");
    expect(() => resolveSftConfig({}, noLora)).toThrow(/nolora\.yaml: frozen: frozen storage f16 needs LoRA/);
  });

  it("reads JSON configs too", () => {
    const cfg = file(
      "sft.json",
      JSON.stringify({ data: "t.jsonl", output: "run", model: "m.gguf", steps: 5 }, null, 2),
    );
    const r = resolveSftConfig({}, cfg);
    expect(r.config.steps).toBe(5);
    expect(r.config.model).toBe(join(tmp.path, "m.gguf"));
  });

  it("names file, line and field for unknown settings and wrong types", () => {
    const unknown = file("u.yaml", "data: t.jsonl\noutput: run\ninit: m.yaml\nlearningRate: 0.1\n");
    expect(() => resolveSftConfig({}, unknown)).toThrow(`${unknown}:4: learningRate: unknown setting`);
    const typed = file("t.yaml", "data: t.jsonl\noutput: run\ninit: m.yaml\n\nbatchSize: eight\n");
    expect(() => resolveSftConfig({}, typed)).toThrow(
      `${typed}:5: batchSize: expected an integer ≥ 1, got "eight"`,
    );
    const neg = file(
      "n.json",
      '{\n  "data": "t.jsonl",\n  "output": "r",\n  "init": "m.yaml",\n  "lr": -1\n}\n',
    );
    expect(() => resolveSftConfig({}, neg)).toThrow(`${neg}:5: lr: expected a number ≥ 0, got number -1`);
    const target = file(
      "l.yaml",
      "data: t.jsonl\noutput: run\nmodel: m.gguf\nlora: true\nloraTargets: [q, wq]\n",
    );
    expect(() => resolveSftConfig({}, target)).toThrow(`${target}:5: loraTargets: unknown LoRA target "wq"`);
  });

  it("names the file and line of YAML syntax errors and non-mapping documents", () => {
    const bad = file("bad.yaml", "data: t.jsonl\nlr: [0.1\n");
    expect(() => resolveSftConfig({}, bad)).toThrow(new RegExp(`^${bad}:\\d+: not valid YAML/JSON`));
    const list = file("list.yaml", "- a\n- b\n");
    expect(() => resolveSftConfig({}, list)).toThrow(`${list}:1: the config must be a mapping`);
    expect(() => resolveSftConfig({}, join(tmp.path, "missing.yaml"))).toThrow(
      `${join(tmp.path, "missing.yaml")}: cannot read the config file: ENOENT`,
    );
  });

  it("flags: errors name the setting; a model and required settings are checked", () => {
    expect(() => resolveSftConfig({ data: "t", output: "r", init: "m.yaml", seqLen: 0 })).toThrow(
      "seqLen: expected an integer ≥ 1, got number 0",
    );
    expect(() => resolveSftConfig({ output: "r", init: "m.yaml" })).toThrow("data: is required");
    expect(() => resolveSftConfig({ data: "t", output: "r" })).toThrow("init: give a model");
    expect(() => resolveSftConfig({ data: "t", output: "r", init: "m.yaml", model: "x.gguf" })).toThrow(
      "give only one of init and model",
    );
    expect(() => resolveSftConfig({ data: "t", output: "r", init: "m.yaml", lora: true })).toThrow(
      "lora: LoRA adapts an existing model",
    );
  });

  it("model configs for --init: located errors, vocabSize refused with a hint", () => {
    const m = file("m.yaml", "hiddenSize: 64\nnumLayers: 2\nnumHeads: 4\n");
    expect(readModelInit(m).input).toEqual({ hiddenSize: 64, numLayers: 2, numHeads: 4 });
    const bad = file("mb.yaml", "hiddenSize: 64\nnumLayers: 2.5\nnumHeads: 4\n");
    expect(() => readModelInit(bad)).toThrow(`${bad}:2: numLayers: expected an integer ≥ 1, got number 2.5`);
    const vocab = file("mv.yaml", "hiddenSize: 64\nnumLayers: 2\nnumHeads: 4\nvocabSize: 100\n");
    expect(() => readModelInit(vocab)).toThrow(`${vocab}:4: vocabSize: unknown model setting`);
    const missing = file("mm.yaml", "hiddenSize: 64\nnumLayers: 2\n");
    expect(() => readModelInit(missing)).toThrow(`${missing}: numHeads: is required`);
  });
});
