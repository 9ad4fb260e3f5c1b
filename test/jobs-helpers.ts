import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
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

interface KeyList {
  version: string;
  keys: string[];
}
const TRL = engineFixture<KeyList & { launcherKeys: string[]; deprecated: string[] }>("trl-sft.json");
const ACCELERATE = engineFixture<KeyList>("accelerate-config.json");
const NEMO_RL = engineFixture<
  KeyList & { required: Record<string, string>; open: string[]; torchKwargs: Record<string, unknown> }
>("nemo-rl-sft.json");
const NEMO_ALIGNER = engineFixture<KeyList>("nemo-aligner-sft.json");

/** `key=value` Hydra overrides in commands (run.sh lines, README code): the dotted keys. */
export function overrides(text: string): string[] {
  return [...text.matchAll(/(?:^|\s)([a-z_][\w.]*)=\S/g)].map((m) => m[1]).filter((k) => k.includes("."));
}

/** NeMo RL's required keys a config lacks (a key under an absent section, or off by its `enabled`, is not). */
function missingRequired(config: unknown): string[] {
  return Object.entries(NEMO_RL.required)
    .filter(([key, rule]) => {
      const parent = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : null;
      const present =
        parent === null || (typeof at(config, parent) === "object" && at(config, parent) !== null);
      const when = /^when (.+)=true$/.exec(rule);
      const applies = present && (when === null || at(config, when[1]) === true);
      return applies && at(config, key) === undefined;
    })
    .map(([key]) => key);
}

/**
 * Everything in a job folder that is not the engine's, each as `file: key`: every key of every emitted
 * config file (nested keys as dotted paths) against the engine's key list from its source
 * (test/fixtures/engines/, with its version), the torch arguments under NeMo RL's `kwargs`, the `key=value`
 * overrides in run.sh and the README, and the flags of the README's `trl sft` commands.
 */
export function keyProblems(engine: Engine, dir: string): string[] {
  const text = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "");
  const unknown = (file: string, keys: string[], list: readonly string[]) =>
    keys.filter((k) => !list.includes(k)).map((k) => `${file}: ${k}`);
  const readme = text("README.md");
  if (engine === "trl") {
    const keys = Object.keys(readYaml(join(dir, "sft.yaml")));
    const commands = readme.split("\n").filter((l) => l.includes("trl sft"));
    const flags = commands.flatMap((l) =>
      [...l.slice(l.indexOf("trl sft")).matchAll(/--(\w+)/g)].map((m) => m[1]),
    );
    return [
      ...unknown("sft.yaml", keys, TRL.keys),
      ...keys.filter((k) => TRL.deprecated.includes(k)).map((k) => `sft.yaml: ${k} (deprecated)`),
      ...["accelerate/zero3.yaml", "accelerate/fsdp2.yaml"]
        .filter((f) => existsSync(join(dir, f)))
        .flatMap((f) => unknown(f, keyPaths(readYaml(join(dir, f))), ACCELERATE.keys)),
      ...unknown("README.md", flags, ["config", ...TRL.keys, ...TRL.launcherKeys]),
    ];
  }
  const config = readYaml(join(dir, "sft.yaml"));
  const list = engine === "nemo-rl" ? NEMO_RL.keys : NEMO_ALIGNER.keys;
  // open mappings belong to another program: empty, or torch's constructor arguments under `kwargs`
  const open: string[] = [];
  const paths =
    engine === "nemo-rl"
      ? keyPaths(config, NEMO_RL.open, (path, value, holder) => {
          if (!path.endsWith(".kwargs")) {
            if (JSON.stringify(value) !== "{}") open.push(`sft.yaml: ${path} (not empty)`);
            return;
          }
          const name = String(holder.name);
          const allowed = NEMO_RL.torchKwargs[`${path} (name: ${name})`];
          if (!Array.isArray(allowed)) {
            open.push(`sft.yaml: ${path} of ${name} (no argument list)`);
            return;
          }
          for (const k of Object.keys(value as object)) {
            if (!allowed.includes(k)) open.push(`sft.yaml: ${path}.${k} (${name})`);
          }
        })
      : keyPaths(config);
  return [
    ...unknown("sft.yaml", paths, list),
    ...open,
    ...(engine === "nemo-rl" ? missingRequired(config).map((k) => `sft.yaml: ${k} (required, missing)`) : []),
    ...unknown("run.sh", overrides(text("run.sh")), list),
    ...unknown("README.md", overrides(readme), list),
  ];
}
