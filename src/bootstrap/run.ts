import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { annotateGroup, outputSchemaForModel } from "../apm/annotate.js";
import { ApmPredictor, type LoadedApm, loadApm } from "../apm/model.js";
import {
  type GenerationJobOptions,
  generateOrSkip,
  PartialOutput,
  retried,
  startGenerationJob,
} from "../apm/resume.js";
import { apmLabeller, labelPredictor } from "../apm/score.js";
import type { AttributeSchema } from "../data/attributes.js";
import { fromJs } from "../data/json.js";
import { readRecords } from "../data/read.js";
import { type DataFormat, type DataRecord, labelString, toConversation } from "../data/record.js";
import { recordLines } from "../data/write.js";
import type { Generator } from "../inference/generator.js";
import { InputError } from "../util/errors.js";
import { countLines, fileSha256 } from "../util/files.js";
import { log } from "../util/log.js";
import { mapOrdered } from "../util/ordered.js";
import { Progress } from "../util/progress.js";
import { pickCombo, readTopCombos, rowSeed, type TopCombos } from "./combos.js";
import { promptKey, readPrompts } from "./prompts.js";

/**
 * `bootstrap`, SteerLM step 4: for each prompt, draw a value combination from the training data's
 * top-quality set, sample a response from the SFT model conditioned on it, re-annotate that response
 * with the APM, and write SteerLM JSONL for a second ACSFT round.
 *
 * Resumable the way `annotate` is (and through the same record, src/apm/resume.ts): rows go to
 * `<out>.partial` in groups of `batchSize`, each group fsynced and then recorded in `<out>.partial.json`
 * (rows done, SHA-256 of the output prefix, of the prompts used, of the APM, and the settings, which
 * include the SFT model's SHA-256 and the top-quality set's). A rerun with the same arguments truncates
 * whatever follows the recorded prefix and goes on. A row's combination and sampling seed depend only on
 * (seed, row), generation runs one sequence at a time (a remote engine gets `concurrency` rows at once,
 * and the rows are written in their order) and the APM's batch shape is fixed, so a resumed run writes
 * exactly the bytes of an uninterrupted one.
 */
export const BOOTSTRAP_PROGRESS_FORMAT = "steerlm-bootstrap-progress";

export interface BootstrapOptions extends GenerationJobOptions {
  /** APM run directory or checkpoint file: re-annotates the generated responses. */
  apm: string;
  /** Training data: its top-quality attribute combinations are the ones sampled. */
  data: string;
  dataFormat?: DataFormat;
  /** Prompts to answer (the record up to its last user turn); default: the training data's own. */
  prompts?: string;
  promptsFormat?: DataFormat;
  /** The attribute whose top value selects combinations; default `quality`, else `helpfulness`. */
  qualityKey?: string;
  /** Seeds each row's combination draw and generation. Default 1. */
  seed?: number;
  /** Default 1 (the paper samples). */
  temperature?: number;
  /** Default 50 (the paper's top-k). */
  topK?: number;
  topP?: number;
  /** Most tokens per response; default 256 or what fits the context. */
  maxTokens?: number;
  /** Only the first `limit` prompts. */
  limit?: number;
  /** Answer each distinct prompt once (HelpSteer has several responses per prompt). */
  uniquePrompts?: boolean;
  /** Rows per resumable group and APM batch. Default 8. */
  batchSize?: number;
  /** Append the training data itself (as SteerLM JSONL) after the bootstrapped rows. */
  mixOriginal?: boolean;
  progress?: boolean;
  /** Milliseconds to wait after each group (lets tests interrupt a run at a known point). */
  throttleMs?: number;
}

export interface BootstrapResult {
  output: string;
  /** Prompts processed (this run and earlier interrupted ones). */
  prompts: number;
  /** Bootstrapped rows written (prompts minus those that did not fit the context). */
  rows: number;
  /** Prompts skipped because prompt + max tokens did not fit the context (this run). */
  skipped: number;
  /** Responses cut at max tokens (this run). */
  truncated: number;
  /** Responses with no text: the model ended its turn at once (this run). Written, as any sample is. */
  empty: number;
  /** Prompts taken from an earlier, interrupted run. */
  resumedPrompts: number;
  /** Training rows appended by `mixOriginal`. */
  mixed: number;
  combos: { qualityKey: string; top: number; entries: number; distinct: number };
  seconds: number;
}

type BootstrapSettings = {
  model: string;
  lora: string | null;
  combos: string;
  qualityKey: string;
  schema: string;
  seed: number;
  temperature: number;
  topK: number;
  topP: number | null;
  maxTokens: number | null;
  contextSize: number;
  batchSize: number;
  uniquePrompts: boolean;
};

/** Library and CLI defaults; temperature 1 and top-k 50 are the paper's sampling. */
export const BOOTSTRAP_DEFAULTS = { seed: 1, temperature: 1, topK: 50, batchSize: 8 };

export async function runBootstrap(opts: BootstrapOptions): Promise<BootstrapResult> {
  const t0 = performance.now();
  if (opts.promptsFormat !== undefined && opts.prompts === undefined)
    throw new InputError(
      "names the format of --prompts, and none was given",
      { setting: "promptsFormat" },
      "give --prompts <file>, or drop it (the prompts then come from --data, in its format)",
    );
  const inputs = { data: opts.data, prompts: opts.prompts, apm: opts.apm };
  const B = opts.batchSize ?? BOOTSTRAP_DEFAULTS.batchSize;
  const group = ["batchSize", B] as const;
  const { paths, model } = await startGenerationJob(opts, { inputs, again: "bootstrap", group });
  try {
    // Everything is read and checked before the slow part starts.
    const top = await readTopCombos(opts.data, {
      schema: model.schema,
      qualityKey: opts.qualityKey,
      format: opts.dataFormat,
    });
    log.info(
      `bootstrap: ${top.combos.length} of ${top.labelledTurns} labelled turns have ${top.qualityKey}:${top.top} ` +
        `(${top.distinct} distinct combinations) in ${opts.data}`,
    );
    const promptsPath = opts.prompts ?? opts.data;
    const prompts = await readPrompts(promptsPath, {
      schema: model.schema,
      format: opts.prompts ? opts.promptsFormat : opts.dataFormat,
      limit: opts.limit,
      unique: opts.uniquePrompts,
    });
    const apm = await loadApm(opts.apm, opts.threads);
    try {
      // The rows feed the SFT model again: the APM writes the model's attributes (a subset of its outputs).
      const schema = outputSchemaForModel(apm.info.schema, model.schema, opts.model);
      const settings: BootstrapSettings = {
        model: await fileSha256(opts.model),
        lora: opts.lora ? await fileSha256(opts.lora) : null,
        combos: top.digest,
        qualityKey: top.qualityKey,
        schema: JSON.stringify(model.schema),
        seed: opts.seed ?? BOOTSTRAP_DEFAULTS.seed,
        temperature: opts.temperature ?? BOOTSTRAP_DEFAULTS.temperature,
        topK: opts.topK ?? BOOTSTRAP_DEFAULTS.topK,
        topP: opts.topP ?? null,
        maxTokens: opts.maxTokens ?? null,
        contextSize: model.contextSize,
        batchSize: B,
        uniquePrompts: Boolean(opts.uniquePrompts),
      };
      const input = resolve(promptsPath);
      const out = PartialOutput.open(paths, {
        format: BOOTSTRAP_PROGRESS_FORMAT,
        input,
        apm: apm.digest,
        settings,
      });
      const r = await generateAndAnnotate(model, apm, schema, prompts, top, settings, out, opts);
      return { ...r, seconds: (performance.now() - t0) / 1000 };
    } finally {
      await apm.free();
    }
  } finally {
    await model.dispose();
    paths.lock.release();
  }
}

async function generateAndAnnotate(
  model: Generator,
  apm: LoadedApm,
  schema: AttributeSchema,
  prompts: readonly DataRecord[],
  top: TopCombos,
  settings: BootstrapSettings,
  out: PartialOutput,
  opts: BootstrapOptions,
): Promise<Omit<BootstrapResult, "seconds">> {
  const B = settings.batchSize;
  const done = out.done.rows;
  const input = resolve(opts.prompts ?? opts.data);
  out.checkCount(input, prompts.length, "prompts");
  const inHash = createHash("sha256");
  for (const p of prompts.slice(0, done)) inHash.update(`${promptKey(p)}\n`);
  out.checkPrefix(input, inHash.copy().digest("hex"), "prompts");
  let rows = done > 0 ? countLines(out.done.prefix) : 0;

  const predictor = await labelPredictor(apm, B);
  const labeller = apmLabeller(apm, predictor);
  const progress = new Progress({ label: "bootstrap", total: prompts.length - done, enabled: opts.progress });
  let skipped = 0;
  let truncated = 0;
  let empty = 0;
  let mixed = 0;
  let complete = false;
  try {
    let group: DataRecord[] = [];
    let next = done;
    const todo = prompts.slice(done);
    const generations = mapOrdered(todo, model.parallel, (prompt, i, signal) =>
      generateRow(model, prompt, top, settings, done + i, signal),
    );
    for await (const generated of generations) {
      const row = next++;
      const prompt = prompts[row] as DataRecord;
      inHash.update(`${promptKey(prompt)}\n`);
      if (generated === null) skipped++;
      else {
        if (generated.truncated) truncated++;
        if (generated.record.turns.at(-1)?.text.trim() === "") empty++;
        group.push(generated.record);
      }
      progress.tick(1, { rows: rows + group.length, skipped, ...retried(model) });
      const last = row === prompts.length - 1;
      if ((row + 1) % B !== 0 && !last) continue;
      // Only the generated (unlabelled) turns are predicted: earlier turns keep the labels they had.
      const { lines } = await annotateGroup(labeller, schema, group, true);
      out.append(lines);
      rows += lines.length;
      group = [];
      out.record(row + 1, inHash.copy().digest("hex"));
      if (opts.throttleMs) await new Promise((r) => setTimeout(r, opts.throttleMs));
    }
    // The original data after the bootstrapped rows; redone whole if a run dies while appending.
    if (opts.mixOriginal) {
      for await (const r of readRecords(opts.data, { format: opts.dataFormat, schema: model.schema })) {
        const lines = recordLines(r, "steerlm", { schema: model.schema });
        out.append(lines);
        mixed += lines.length;
      }
    }
    complete = true;
  } finally {
    progress.finish();
    out.close(complete ? opts.output : undefined);
    if (predictor instanceof ApmPredictor) predictor.free();
  }
  log.info(
    `bootstrap: ${rows} rows from ${prompts.length} prompts${done ? ` (${done} resumed)` : ""}` +
      `${skipped ? `, ${skipped} skipped${done ? " in this run" : ""}` : ""}${mixed ? `, ${mixed} original rows appended` : ""}: ${opts.output}`,
  );
  if (empty > 0)
    log.warn(
      `bootstrap: ${empty} responses are empty (the model ended its turn at once${done ? ", in this run" : ""}): ` +
        "written and labelled like the others, they teach the next round to answer nothing",
    );
  return {
    output: opts.output,
    prompts: prompts.length,
    rows,
    skipped,
    truncated,
    empty,
    resumedPrompts: done,
    mixed,
    combos: { qualityKey: top.qualityKey, top: top.top, entries: top.combos.length, distinct: top.distinct },
  };
}

/** One prompt's bootstrapped record (its new turn unlabelled, for the APM), or null if it does not fit. */
async function generateRow(
  model: Generator,
  prompt: DataRecord,
  top: TopCombos,
  settings: BootstrapSettings,
  row: number,
  signal: AbortSignal,
): Promise<{ record: DataRecord; truncated: boolean } | null> {
  const combo = pickCombo(top.combos, settings.seed, row);
  const seed = rowSeed(settings.seed, row);
  const result = await generateOrSkip(model, prompt, () =>
    model.generate({
      conversation: toConversation(prompt, model.schema),
      attributes: combo,
      temperature: settings.temperature,
      topK: settings.topK,
      topP: settings.topP ?? undefined,
      maxTokens: settings.maxTokens ?? undefined,
      seed,
      signal,
    }),
  );
  if (result === null) return null;
  const extra = new Map(prompt.extra);
  // What the response was asked for; the turn's label will be what the APM says it is.
  extra.set("bootstrap", fromJs({ requested: labelString(combo, model.schema), seed }));
  const record: DataRecord = {
    system: prompt.system,
    turns: [...prompt.turns, { role: "assistant", text: result.text, labels: null }],
    extra,
    origin: prompt.origin,
  };
  return { record, truncated: result.finishReason === "length" };
}
