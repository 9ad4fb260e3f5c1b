import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { type Engine, type ExportJobResult, exportJob } from "../src/jobs/index.js";
import { resolveSftConfig } from "../src/run/config.js";
import type { SettingName } from "../src/run/settings.js";
import { repoRoot, sharedData } from "./helpers.js";

/** What the job tests share: the engines' key lists, a SteerLM data set and config, and a job per call. */

export function engineFixture<T>(name: string): T {
  return JSON.parse(readFileSync(join(repoRoot, "test", "fixtures", "engines", name), "utf8")) as T;
}

export const SAMPLE = sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
export const HUB_MODEL = "meta-llama/Llama-3.2-1B";

/**
 * Writes into `dir` the real NeMo-Aligner sample split 480/32 into train.jsonl and val.jsonl, and a
 * `steerlm sft` config for them (the GGUF it names is what a steerlm run starts from; jobs take --model).
 */
export function writeDataset(dir: string): { train: string; val: string; config: string } {
  const lines = readFileSync(SAMPLE, "utf8")
    .split("\n")
    .filter((l) => l !== "");
  const train = join(dir, "train.jsonl");
  const val = join(dir, "val.jsonl");
  writeFileSync(train, `${lines.slice(0, 480).join("\n")}\n`);
  writeFileSync(val, `${lines.slice(480).join("\n")}\n`);
  const config = join(dir, "sft.yaml");
  writeFileSync(
    config,
    [
      "data: train.jsonl",
      "val: val.jsonl",
      "model: base.gguf",
      "output: run",
      "lr: 0.0001",
      "batchSize: 4",
      "gradAccum: 2",
      "seqLen: 1024",
      "evalEvery: 20",
      "evalBatches: 2",
      "checkpointEvery: 25",
      "",
    ].join("\n"),
  );
  return { train, val, config };
}

/** A local Hugging Face directory as far as a job looks at it: config.json, and a tokenizer with `tokens`. */
export function writeHfDir(dir: string, tokens: string[]): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"] }));
  const added = tokens.map((content, i) => ({ id: 1000 + i, content, special: true }));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ added_tokens: added, model: { vocab: {} } }));
  return dir;
}

/** `steerlm export job` through the library: the config file, then `flags` (model: a hub id unless given). */
export function exportTo(
  engine: Engine,
  output: string,
  config: string | undefined,
  flags: Partial<Record<SettingName, unknown>> = {},
  opts: { gpus?: number; nodes?: number } = {},
): Promise<ExportJobResult> {
  const model = flags.model ?? HUB_MODEL;
  const resolved = resolveSftConfig({ ...flags, model, output }, config);
  return exportJob(resolved, { engine, model: String(model), ...opts });
}

export function readYaml(path: string): Record<string, unknown> {
  return parse(readFileSync(path, "utf8")) as Record<string, unknown>;
}

export function readJsonl(path: string): unknown[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
}

/**
 * Every key path of a config, nested mappings as dotted paths and the mappings of a list as `key[]`; a
 * path in `open` is listed but not entered (its keys belong to another program): `onOpen` gets its value
 * and the mapping that holds it.
 */
export function keyPaths(
  value: unknown,
  open: readonly string[] = [],
  onOpen: (path: string, value: unknown, holder: Record<string, unknown>) => void = () => {},
  prefix = "",
): string[] {
  if (typeof value !== "object" || value === null) return [];
  if (Array.isArray(value)) return value.flatMap((item) => keyPaths(item, open, onOpen, `${prefix}[]`));
  const holder = value as Record<string, unknown>;
  return Object.entries(holder).flatMap(([k, v]) => {
    const path = prefix === "" ? k : `${prefix}.${k}`;
    if (open.includes(path)) {
      onOpen(path, v, holder);
      return [path];
    }
    const scalars = Array.isArray(v) && v.every((x) => typeof x !== "object" || x === null);
    return [path, ...(scalars ? [] : keyPaths(v, open, onOpen, path))];
  });
}

/** The value at a dotted path of a parsed config. */
export function at(config: unknown, dotted: string): unknown {
  return dotted
    .split(".")
    .reduce<unknown>(
      (v, k) => (typeof v === "object" && v !== null ? (v as Record<string, unknown>)[k] : undefined),
      config,
    );
}

/** The YAML files as PyYAML's safe_load (what `trl sft` uses) reads them; null when python3 has no yaml. */
export function pythonYaml(files: string[]): unknown[] | null {
  const r = spawnSync(
    "/usr/bin/python3",
    [
      "-c",
      "import sys, json, yaml; print(json.dumps([yaml.safe_load(open(f)) for f in sys.argv[1:]]))",
      ...files,
    ],
    { encoding: "utf8" },
  );
  if (r.error || (r.status !== 0 && /No module named/.test(r.stderr))) return null;
  if (r.status !== 0) throw new Error(`python3 yaml: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown[];
}
