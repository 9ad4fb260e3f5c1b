import { existsSync, readdirSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { loadSchema } from "../data/attributes.js";
import type { DataRecord } from "../data/record.js";
import { CONTROL_TOKEN_NAMES } from "../data/template.js";
import type { ResolvedSftConfig } from "../run/config.js";
import { readSteerlmRecords } from "../run/data.js";
import { withModelSchema } from "../run/setup.js";
import { STEERLM2_KEY } from "../steerlm2/format.js";
import { InputError } from "../util/errors.js";
import { controlTextCount } from "./data.js";
import type { Engine } from "./engines.js";
import { modelName, modelReference, tokenizerControlTokens } from "./model.js";
import { nemoAlignerJob } from "./nemo-aligner.js";
import { nemoRlJob } from "./nemo-rl.js";
import { type BuiltJob, cannotExpress, type JobFile, type JobPlan, refuse, SCHEMA_FILE } from "./plan.js";
import { renderReadme } from "./readme.js";
import { trlJob } from "./trl.js";

/**
 * `steerlm export job`: a folder that runs a `steerlm sft` run's settings and data as they are on a
 * distributed engine. Every setting is mapped to the engine's keys, has no engine counterpart (said so in
 * the README), or is refused here, before anything is written.
 */

const BUILDERS: Record<Engine, (plan: JobPlan) => BuiltJob> = {
  trl: trlJob,
  "nemo-rl": nemoRlJob,
  "nemo-aligner": nemoAlignerJob,
};

export interface ExportJobOptions {
  engine: Engine;
  /** The model as the user typed it: a hub id is not a path (default: as the config file writes it). */
  model?: string;
  /** GPUs per machine, and machines, of the README's multi-GPU commands (default 8 and 2). */
  gpus?: number;
  nodes?: number;
}

export interface ExportJobResult {
  /** The job folder. */
  dir: string;
  engine: Engine;
  /** Its files, relative to it. */
  files: string[];
  /** Optimiser updates the job runs. */
  steps: number;
}

/** Writes the job folder `resolved.config.output` (which must not exist, or be empty). */
export async function exportJob(
  resolved: ResolvedSftConfig,
  opts: ExportJobOptions,
): Promise<ExportJobResult> {
  const cfg = resolved.config;
  const { engine } = opts;
  const at = { engine, resolved };
  if (cfg.init !== null) {
    throw refuse(
      at,
      "init",
      "training a new model (init): a job fine-tunes an existing model",
      "give --model",
    );
  }
  if (cfg.frozen !== null) {
    throw refuse(
      at,
      "frozen",
      `a frozen base stored as ${cfg.frozen}: it has no setting for steerlm's own storage of the base under LoRA`,
      "drop frozen (the engine keeps the base as the model stores it)",
    );
  }
  const model = modelReference(resolved, opts.model);
  if (model.kind === "nemo" && engine !== "nemo-aligner") {
    throw new InputError(
      `${engine} loads Hugging Face models, not .nemo checkpoints`,
      { file: model.path },
      "give --model <Hugging Face directory or hub id>",
    );
  }
  if (cfg.allowUnlabeled)
    throw new InputError(
      "a job trains on labelled data only: every conversation needs its value lines",
      { setting: "allowUnlabeled" },
      "label the data first (`steerlm annotate`), and drop --allow-unlabeled",
    );
  // a steerlm export as the base keeps its schema, as `steerlm sft --model` does (the plan, its README too)
  const decided = model.kind === "hf-dir" ? await withModelSchema(resolved) : resolved;
  const schema = loadSchema(decided.config.schema);
  const train = await readSteerlmRecords(cfg.data, schema, "steerlm");
  refuseWeights(engine, train);
  let val: DataRecord[] | null = null;
  if (cfg.val !== null) {
    const all = await readSteerlmRecords(cfg.val, schema, "steerlm");
    refuseWeights(engine, all);
    val = cfg.evalBatches > 0 ? all.slice(0, cfg.evalBatches * cfg.batchSize) : all;
  }
  const plan: JobPlan = {
    engine,
    resolved: decided,
    cfg: decided.config,
    model,
    schema,
    train,
    val,
    gpus: opts.gpus ?? 8,
    nodes: opts.nodes ?? 2,
  };
  const job = BUILDERS[engine](plan);
  job.differences.push(...commonDifferences(plan));
  // every engine's folder: the way back steers with it
  job.files.push({ path: SCHEMA_FILE, text: `${JSON.stringify(schema, null, 2)}\n` });
  const files = [...job.files, { path: "README.md", text: renderReadme(plan, job) }];
  await writeFolder(cfg.output, files);
  return { dir: cfg.output, engine, files: files.map((f) => f.path), steps: job.steps };
}

/** SteerLM 2.0's sample files weigh each line's loss: no engine's SFT reads such weights. */
function refuseWeights(engine: Engine, records: readonly DataRecord[]): void {
  const weighted = records.find((r) => r.extra.has(STEERLM2_KEY));
  if (!weighted) return;
  throw new InputError(
    cannotExpress(engine, `SteerLM 2.0's per-sample loss weights (the "${STEERLM2_KEY}" key of this line)`),
    { file: weighted.origin?.file, line: weighted.origin?.line },
    "train SteerLM 2.0 with `steerlm steerlm2 train`, or export plain SteerLM data",
  );
}

/** What differs from `steerlm sft` on every engine. */
function commonDifferences(plan: JobPlan): string[] {
  const out: string[] = [];
  const control = tokenizerControlTokens(plan.model);
  if (control === null) {
    const names = CONTROL_TOKEN_NAMES.map((t) => `\`${t}\``);
    out.push(
      `The tokenizer must have ${names.slice(0, -1).join(", ")} and ${names.at(-1)} as tokens of their own, or the engine reads them as ordinary text (steerlm's own run adds them to a vocabulary that lacks them); the job could not look at this model's tokenizer.`,
    );
  } else if (control.length < CONTROL_TOKEN_NAMES.length) {
    const missing = CONTROL_TOKEN_NAMES.filter((t) => !control.includes(t));
    out.push(
      `The tokenizer of \`${modelName(plan.model)}\` lacks ${missing.map((t) => `\`${t}\``).join(", ")}: the engine reads them as ordinary text, while steerlm's own run adds them to the vocabulary. Add them (and resize the embeddings) first for a model that handles them as single tokens.`,
    );
  }
  const texts = controlTextCount(plan.train);
  if (texts > 0) {
    out.push(
      `${texts} of the ${plan.train.length} training conversations have a control token's spelling (\`<extra_id_1>\`…) in their own text: steerlm keeps it text, the engine's tokenizer reads it as the control token when it has one (as NeMo-Aligner does).`,
    );
  }
  out.push(
    `The data order${plan.cfg.lora ? " and the LoRA initialisation are" : " is"} the engine's own: the same seed does not give steerlm's run.`,
  );
  return out;
}

/**
 * The folder appears complete or not at all: written beside its final name and renamed into place. An
 * existing folder must be empty, so a job never mixes with other files.
 */
async function writeFolder(dir: string, files: readonly JobFile[]): Promise<void> {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new InputError(
      "exists and is not empty",
      { setting: "output", file: dir },
      "write the job to a new folder",
    );
  }
  await mkdir(dirname(dir), { recursive: true });
  const tmp = await mkdtemp(join(dirname(dir), `.${basename(dir)}.tmp-`));
  try {
    await chmod(tmp, 0o755); // mkdtemp's folder is private
    for (const f of files) {
      const path = join(tmp, ...f.path.split("/"));
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, f.text);
      if (f.executable) await chmod(path, 0o755);
    }
    if (existsSync(dir)) await rmdir(dir);
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
