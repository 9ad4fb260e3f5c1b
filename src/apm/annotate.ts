import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { type AttributeSchema, loadSchema } from "../data/attributes.js";
import { steerlmLine } from "../data/formats/steerlm.js";
import { sniffFile } from "../data/input.js";
import { readRecords } from "../data/read.js";
import type { DataFormat, DataRecord, RecordTurn } from "../data/record.js";
import type { BackendSettings } from "../inference/open.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { Progress } from "../util/progress.js";
import { ApmPredictor, loadApm } from "./model.js";
import { PartialOutput, retried, SIDECAR_FORMAT, startJob } from "./resume.js";
import { ANNOTATE_DEFAULTS, apmLabeller, type Labeller, labelPredictor, remoteLabeller } from "./score.js";

/**
 * `annotate`: the APM's predictions, clamped to each attribute's scale and rounded half to even, become
 * the label strings of assistant turns; the output is SteerLM chat JSONL, one line per input record.
 *
 * Resumable. The output grows as `<out>.partial`, beside a sidecar `<out>.partial.json` that records, after
 * each group of `batchSize` records: the rows done, the byte length and SHA-256 of the output prefix, the
 * SHA-256 of those input rows, the APM's SHA-256 and the settings. A rerun checks all of them, truncates
 * whatever follows the recorded prefix (lines of an unrecorded group, a torn last line) and continues
 * with the next group. Groups are aligned the same way in every run and a turn's prediction does not
 * depend on which turns share its forward pass, so a resumed run writes the bytes an uninterrupted one
 * would have. At the end `.partial` is renamed to the output (atomic) and the sidecar is removed.
 *
 * With `backend` and no `apm`, the APM is the one a `steerlm serve --apm` at `backend` scores with (any
 * kind): the turns go to its POST /v1/steerlm/score, `batchSize` per request, `concurrency` requests
 * in flight, written in their order; the server predicts as this function does here, so the output
 * is the local run's, byte for byte. Resuming checks the server's APM by the SHA-256 it reports.
 *
 * With `backend` and a generative `apm`, the APM decodes on an engine serving it as a GGUF (`steerlm
 * export gguf`): the prompt is tokenized here with the checkpoint's tokenizer and sent as ids, each
 * attribute's value token is the engine's greedy choice among the allowed ones (src/inference/engine.ts),
 * and `concurrency` records are decoded at once, written in their order. The engine's float kernels are
 * not steerlm's, so a value can differ from a local run's where two candidates' logits are within
 * rounding of each other.
 */
export interface AnnotateOptions extends BackendSettings {
  /** APM run directory or checkpoint file; absent: the APM of the `steerlm serve --apm` at `backend`. */
  apm?: string;
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
  /** Assistant turns per forward pass (at most), and records per resumable group. Default 8. */
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

export { ANNOTATE_DEFAULTS };

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
    if (opts.apm === undefined) {
      if (opts.backend === undefined)
        throw new InputError(
          "no APM to annotate with",
          { setting: "apm" },
          "give an APM run, or the URL of a `steerlm serve --apm` (backend)",
        );
      if (opts.threads !== undefined)
        throw new InputError(
          "applies to a local APM only (the engine runs the remote one)",
          { setting: "threads" },
          "drop it, or annotate with a local --apm",
        );
      const remote = await remoteLabeller({ ...opts, backend: opts.backend }, B);
      return await annotateWith(remote, opts, B, paths, t0);
    }
    const apm = await loadApm(opts.apm, opts.threads);
    try {
      const predictor = await labelPredictor(apm, B, opts);
      try {
        return await annotateWith(apmLabeller(apm, predictor), opts, B, paths, t0);
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

async function annotateWith(
  labeller: Labeller,
  opts: AnnotateOptions,
  B: number,
  paths: { partial: string; sidecar: string },
  t0: number,
): Promise<AnnotateResult> {
  const schema = outputSchema(labeller.schema, opts.schema);
  const settings: AnnotateSettings = {
    format: opts.format ?? null,
    onlyUnlabeled: Boolean(opts.onlyUnlabeled),
    batchSize: B,
    schema: JSON.stringify(schema),
  };
  const input = resolve(opts.input);
  const out = PartialOutput.open(paths, { format: SIDECAR_FORMAT, input, apm: labeller.digest, settings });

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
  // Groups read but not yet written, each with the input rows and hash its sidecar record carries. A
  // turn's prediction does not depend on its batch (ApmPredictor), so the output, and what is recorded
  // after each group, are those of one group at a time.
  let pending: Array<{ records: DataRecord[]; rows: number; hash: string }> = [];
  const flushPending = async () => {
    const records = pending.flatMap((g) => g.records);
    const { lines, predicted } = await annotateGroup(labeller, schema, records, Boolean(opts.onlyUnlabeled));
    turns += predicted;
    let at = 0;
    for (const g of pending) {
      out.append(lines.slice(at, at + g.records.length));
      at += g.records.length;
      out.record(g.rows, g.hash);
      if (opts.throttleMs) await new Promise((r) => setTimeout(r, opts.throttleMs));
    }
    pending = [];
  };
  const flushGroup = async () => {
    pending.push({ records: group, rows, hash: inHash.copy().digest("hex") });
    group = [];
    if (pending.length >= labeller.groupsAtOnce) await flushPending();
  };
  // Input labels are read, and lines written, with the APM's schema: the output schema only picks attributes.
  const reader = readRecords(opts.input, {
    format: opts.format,
    schema: labeller.schema,
    allowUnlabeled: true,
    onProgress: (n) => progress.tick(n, { rows, turns, ...retried(labeller) }),
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
    if (pending.length > 0) await flushPending();
    complete = true;
  } finally {
    progress.finish();
    out.close(complete ? opts.output : undefined);
  }
  const seconds = (performance.now() - t0) / 1000;
  const resumed = out.done.rows;
  log.info(
    `annotate: ${rows} rows, ${turns} assistant turns labelled${resumed ? ` (${resumed} rows resumed; turns counted in this run)` : ""}: ${opts.output}`,
  );
  return { output: opts.output, rows, turns, resumedRows: resumed, seconds };
}

/** Predicts the labels of a group of records; returns their output lines (also used by `steerlm bootstrap`). */
export async function annotateGroup(
  labeller: Labeller,
  schema: AttributeSchema,
  group: readonly DataRecord[],
  onlyUnlabeled: boolean,
): Promise<{ lines: string[]; predicted: number }> {
  const needs = (t: RecordTurn) =>
    t.role === "assistant" && !(onlyUnlabeled && t.labels !== null && Object.keys(t.labels).length > 0);
  const scores = await labeller.predict(schema, group, needs);
  let predicted = 0;
  const lines = group.map((r, ri) => {
    const turns = r.turns.map((t, ti) => {
      const score = scores[ri]?.get(ti);
      if (!score) return { ...t };
      predicted++;
      return { ...t, labels: score.labels };
    });
    return steerlmLine({ ...r, turns }, { schema: labeller.schema });
  });
  return { lines, predicted };
}

/** The schema to write: the APM's (`apmSchema`), or a subset of its attributes (each must be one of its outputs). */
export function outputSchema(
  apmSchema: AttributeSchema,
  given: string | AttributeSchema | undefined,
): AttributeSchema {
  if (given === undefined) return apmSchema;
  const schema = typeof given === "string" ? loadSchema(given) : given;
  const have = apmSchema.attributes.map((a) => a.name);
  for (const a of schema.attributes) {
    const own = apmSchema.attributes.find((b) => b.name === a.name);
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
  apmSchema: AttributeSchema,
  schema: AttributeSchema,
  model: string,
): AttributeSchema {
  try {
    return outputSchema(apmSchema, schema);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    throw new InputError(
      `${err.what}: the APM must predict every attribute of the SFT model's schema`,
      { file: model, field: "schema" },
      "pick the model's schema with --schema, or train the APM with that schema",
    );
  }
}
