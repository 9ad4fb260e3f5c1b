import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { type AttributeSchema, type AttributeValues, loadSchema, toLabel } from "../data/attributes.js";
import { steerlmLine } from "../data/formats/steerlm.js";
import { sniffFile } from "../data/input.js";
import { readRecords } from "../data/read.js";
import type { DataFormat, DataRecord, RecordTurn } from "../data/record.js";
import { Engine, remoteSetting } from "../inference/engine.js";
import { type BackendSettings, checkLocal } from "../inference/open.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { mapOrdered } from "../util/ordered.js";
import { Progress } from "../util/progress.js";
import { type ApmExample, apmTokens, packApmBatch } from "./data.js";
import { attributeTokenIds, decodeGenerative, modelPicker, type PickToken } from "./generative.js";
import { ApmPredictor, type LoadedApm, loadApm } from "./model.js";
import { PartialOutput, retried, SIDECAR_FORMAT, startJob } from "./resume.js";

/**
 * `annotate`: the APM's predictions, clamped to each attribute's scale and rounded half to even, become
 * the label strings of assistant turns; the output is SteerLM chat JSONL, one line per input record.
 *
 * Resumable. The output grows as `<out>.partial`, beside a sidecar `<out>.partial.json` that records, after
 * each group of `batchSize` records: the rows done, the byte length and SHA-256 of the output prefix, the
 * SHA-256 of those input rows, the APM's SHA-256 and the settings. A rerun checks all of them, truncates
 * whatever follows the recorded prefix (lines of an unrecorded group, a torn last line) and continues
 * with the next group. Groups are aligned the same way in every run and the batch shape is fixed, so a
 * resumed run writes the bytes an uninterrupted one would have. At the end `.partial` is renamed to the
 * output (atomic) and the sidecar is removed.
 *
 * With `backend`, a generative APM decodes on an engine serving it as a GGUF (`steerlm export gguf`):
 * the prompt is tokenized here with the checkpoint's tokenizer and sent as ids, each attribute's value
 * token is the engine's greedy choice among the allowed ones (src/inference/engine.ts), and `concurrency`
 * records are decoded at once, written in their order. The engine's float kernels are not steerlm's, so
 * a value can differ from a local run's where two candidates' logits are within rounding of each other.
 */
export interface AnnotateOptions extends BackendSettings {
  /** APM run directory or checkpoint file. */
  apm: string;
  input: string;
  output: string;
  /** Input format; detected when absent. */
  format?: DataFormat;
  /**
   * Attributes to predict (built-in name, schema file or schema): a subset of the APM's outputs with the
   * same scales. Default: all of the APM's outputs.
   */
  schema?: string | AttributeSchema;
  /** Only turns without labels get predictions; labelled turns are copied as they are. */
  onlyUnlabeled?: boolean;
  /** Assistant turns per forward pass, and records per resumable group. Default 8. */
  batchSize?: number;
  threads?: number;
  /** Replace an existing finished output. */
  overwrite?: boolean;
  progress?: boolean;
  /** Milliseconds to wait after each group (lets tests interrupt a run at a known point). */
  throttleMs?: number;
}

export interface AnnotateResult {
  output: string;
  rows: number;
  /** Assistant turns that got predicted labels. */
  turns: number;
  /** Rows taken from an earlier, interrupted run. */
  resumedRows: number;
  seconds: number;
}

/** Settings a resumed annotation must share with the partial one. */
type AnnotateSettings = {
  format: string | null;
  onlyUnlabeled: boolean;
  batchSize: number;
  schema: string;
};

/** What identifies an input record for the resume check: its text and labels, not where it came from. */
function recordKey(r: DataRecord): string {
  return JSON.stringify([r.system, r.turns.map((t) => [t.role, t.text, t.labels])]);
}

export const ANNOTATE_DEFAULTS = { batchSize: 8 };

export async function annotateFile(opts: AnnotateOptions): Promise<AnnotateResult> {
  const t0 = performance.now();
  const B = opts.batchSize ?? ANNOTATE_DEFAULTS.batchSize;
  const paths = startJob({
    inputs: { input: opts.input },
    output: opts.output,
    overwrite: opts.overwrite,
    again: "annotate",
    group: ["batchSize", B],
  });
  try {
    const apm = await loadApm(opts.apm, opts.threads);
    try {
      const predictor = await labelPredictor(apm, B, opts);
      try {
        return await annotateWith(apm, predictor, opts, B, paths, t0);
      } finally {
        if (predictor instanceof ApmPredictor) predictor.free();
      }
    } finally {
      await apm.free();
    }
  } finally {
    paths.lock.release();
  }
}

/**
 * What predicts a group's labels: the regression APM's fixed [B, T] batch, or the generative APM's
 * constrained decoding, `concurrency` records at once, each next token picked here or by an engine.
 */
export type LabelPredictor =
  | ApmPredictor
  | {
      pick: PickToken;
      concurrency: number;
      /** Requests to the engine sent again so far (undefined when decoding here). */
      readonly retries?: number;
    };

/** `apm`'s predictor for groups of B records; a generative one decodes on the engine at `backend` if set. */
export async function labelPredictor(
  apm: LoadedApm,
  B: number,
  remote: BackendSettings = {},
): Promise<LabelPredictor> {
  if (remote.backend === undefined) {
    checkLocal(remote);
    if (apm.info.variant === "regression")
      return new ApmPredictor(apm.backend, apm.model, B, apm.info.seqLen);
    return { pick: modelPicker(apm.backend, apm.model), concurrency: 1 };
  }
  if (apm.info.variant === "regression")
    throw new InputError(
      "a regression APM predicts with its head, which no engine serves",
      { file: apm.checkpoint, setting: "backend" },
      "annotate here without an engine, or serve a generative APM (`steerlm export gguf <apm run>`)",
    );
  const concurrency = remoteSetting("concurrency", remote.concurrency);
  const engine = await Engine.connect({ ...remote, backend: remote.backend, apiKey: remote.backendApiKey });
  const text = (id: number) => apm.tokenizer.decode([id]);
  return {
    pick: (window, candidates) => engine.choose(window, candidates, text),
    concurrency,
    get retries() {
      return engine.retries;
    },
  };
}

async function annotateWith(
  apm: LoadedApm,
  predictor: LabelPredictor,
  opts: AnnotateOptions,
  B: number,
  paths: { partial: string; sidecar: string },
  t0: number,
): Promise<AnnotateResult> {
  const schema = outputSchema(apm, opts.schema);
  const T = apm.info.seqLen;
  const K = apm.info.schema.attributes.length;
  const settings: AnnotateSettings = {
    format: opts.format ?? null,
    onlyUnlabeled: Boolean(opts.onlyUnlabeled),
    batchSize: B,
    schema: JSON.stringify(schema),
  };
  const input = resolve(opts.input);
  const out = PartialOutput.open(paths, { format: SIDECAR_FORMAT, input, apm: apm.digest, settings });

  const pad = apm.tokenizer.eosId ?? 0;
  const inHash = createHash("sha256");
  const size = statSync(opts.input).size;
  const kind = await sniffFile(opts.input);
  const progress = new Progress({
    label: "annotate",
    total: kind === "parquet" ? undefined : size,
    enabled: opts.progress,
  });
  let rows = 0;
  let turns = 0;
  let group: DataRecord[] = [];
  const flushGroup = async () => {
    const onlyUnlabeled = Boolean(opts.onlyUnlabeled);
    const { lines, predicted } = await annotateGroup(
      apm,
      schema,
      predictor,
      group,
      B,
      T,
      K,
      pad,
      onlyUnlabeled,
    );
    out.append(lines);
    turns += predicted;
    group = [];
    out.record(rows, inHash.copy().digest("hex"));
    if (opts.throttleMs) await new Promise((r) => setTimeout(r, opts.throttleMs));
  };
  // Input labels are read, and lines written, with the APM's schema: the output schema only picks attributes.
  const reader = readRecords(opts.input, {
    format: opts.format,
    schema: apm.info.schema,
    allowUnlabeled: true,
    onProgress: (n) =>
      progress.tick(n, { rows, turns, ...(predictor instanceof ApmPredictor ? {} : retried(predictor)) }),
  });
  let complete = false;
  try {
    for await (const record of reader) {
      inHash.update(`${recordKey(record)}\n`);
      rows++;
      if (rows === out.done.rows) out.checkPrefix(opts.input, inHash.copy().digest("hex"), "rows");
      if (rows <= out.done.rows) continue;
      group.push(record);
      if (group.length === B) await flushGroup();
    }
    out.checkCount(opts.input, rows, "rows");
    if (group.length > 0) await flushGroup();
    complete = true;
  } finally {
    progress.finish();
    out.close(complete ? opts.output : undefined);
  }
  const seconds = (performance.now() - t0) / 1000;
  const resumed = out.done.rows;
  log.info(
    `annotate: ${rows} rows, ${turns} assistant turns labelled${resumed ? ` (${resumed} rows resumed)` : ""}: ${opts.output}`,
  );
  return { output: opts.output, rows, turns, resumedRows: resumed, seconds };
}

/** Predicts the labels of a group of records; returns their output lines (also used by `steerlm bootstrap`). */
export async function annotateGroup(
  apm: LoadedApm,
  schema: AttributeSchema,
  predictor: LabelPredictor,
  group: readonly DataRecord[],
  B: number,
  T: number,
  K: number,
  pad: number,
  onlyUnlabeled: boolean,
): Promise<{ lines: string[]; predicted: number }> {
  const outputs = schema.attributes.map((a) =>
    apm.info.schema.attributes.findIndex((b) => b.name === a.name),
  );
  const needs = (t: RecordTurn) =>
    t.role === "assistant" && !(onlyUnlabeled && t.labels !== null && Object.keys(t.labels).length > 0);
  if (!(predictor instanceof ApmPredictor)) return annotateGenerative(apm, schema, group, needs, predictor);
  const jobs: Array<{ record: number; turn: number; ex: ApmExample }> = [];
  group.forEach((r, ri) => {
    r.turns.forEach((t, ti) => {
      if (!needs(t)) return;
      const { ids } = apmTokens(r, ti, apm.tokenizer, apm.info.bos, T);
      jobs.push({ record: ri, turn: ti, ex: { ids, targets: new Float32Array(K) } });
    });
  });
  const out = group.map((r) => ({ ...r, turns: r.turns.map((t) => ({ ...t })) }));
  for (let i = 0; i < jobs.length; i += B) {
    const chunk = jobs.slice(i, i + B);
    const pred = predictor.predict(
      packApmBatch(
        chunk.map((j) => j.ex),
        B,
        T,
        K,
        pad,
      ).batch,
    ); // [B·K]
    chunk.forEach((j, s) => {
      const labels: AttributeValues = {};
      schema.attributes.forEach((a, i) => {
        labels[a.name] = toLabel(a, pred[s * K + (outputs[i] as number)] as number);
      });
      (out[j.record] as DataRecord).turns[j.turn].labels = labels;
    });
  }
  return { lines: out.map((r) => steerlmLine(r, { schema: apm.info.schema })), predicted: jobs.length };
}

/** The schema to write: the APM's, or a subset of its attributes (each must be one of its outputs). */
export function outputSchema(apm: LoadedApm, given: string | AttributeSchema | undefined): AttributeSchema {
  if (given === undefined) return apm.info.schema;
  const schema = typeof given === "string" ? loadSchema(given) : given;
  const have = apm.info.schema.attributes.map((a) => a.name);
  for (const a of schema.attributes) {
    const own = apm.info.schema.attributes.find((b) => b.name === a.name);
    if (!own) {
      throw new InputError(
        `attribute "${a.name}" of schema ${schema.name} is not an output of the APM (${have.join(",")})`,
        { setting: "schema" },
      );
    }
    if (own.min !== a.min || own.max !== a.max) {
      throw new InputError(
        `attribute "${a.name}" has the scale ${a.min}..${a.max} in schema ${schema.name}, the APM's is ${own.min}..${own.max}`,
        { setting: "schema" },
      );
    }
  }
  return schema;
}

/**
 * `outputSchema` for a job that writes the labels an SFT model reads (bootstrap, SteerLM 2.0): the schema
 * is the model's, so an error names the model rather than `--schema`.
 */
export function outputSchemaForModel(
  apm: LoadedApm,
  schema: AttributeSchema,
  model: string,
): AttributeSchema {
  try {
    return outputSchema(apm, schema);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    throw new InputError(
      `${err.what}: the APM must predict every attribute of the SFT model's schema`,
      { file: model, field: "schema" },
      "pick the model's schema with --schema, or train the APM with that schema",
    );
  }
}

/** The generative APM: turns in order, each decoded with the labels already chosen for earlier turns. */
async function annotateGenerative(
  apm: LoadedApm,
  schema: AttributeSchema,
  group: readonly DataRecord[],
  needs: (t: RecordTurn) => boolean,
  decoder: { pick: PickToken; concurrency: number },
): Promise<{ lines: string[]; predicted: number }> {
  const pairs = attributeTokenIds(apm.tokenizer, apm.info.schema);
  let predicted = 0;
  const line = async (r: DataRecord) => {
    const earlier = new Map<number, AttributeValues>();
    const turns: RecordTurn[] = [];
    for (const [ti, t] of r.turns.entries()) {
      if (!needs(t)) {
        turns.push({ ...t });
        continue;
      }
      const { labels: all } = await decodeGenerative(
        apm.tokenizer,
        apm.info.schema,
        pairs,
        r,
        ti,
        earlier,
        apm.info.bos,
        apm.info.seqLen,
        decoder.pick,
      );
      earlier.set(ti, all);
      predicted++;
      const labels: AttributeValues = {};
      for (const a of schema.attributes) labels[a.name] = all[a.name] as number;
      turns.push({ ...t, labels });
    }
    return steerlmLine({ ...r, turns }, { schema: apm.info.schema });
  };
  const lines: string[] = [];
  for await (const l of mapOrdered(group, decoder.concurrency, line)) lines.push(l);
  return { lines, predicted };
}
