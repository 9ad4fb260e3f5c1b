import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import { outputSchemaForModel } from "../apm/annotate.js";
import { apmTokens, packApmBatch } from "../apm/data.js";
import { ApmPredictor, type LoadedApm, loadApm } from "../apm/model.js";
import { checkOutput, readResumeState, writeAll, writeSidecar } from "../apm/resume.js";
import { type AttributeSchema, type AttributeValues, withDefaults } from "../data/attributes.js";
import type { DataFormat, DataRecord } from "../data/record.js";
import { toConversation } from "../data/record.js";
import { ContextLengthError, SteerableModel } from "../inference/model.js";
import { InputError } from "../util/errors.js";
import { countLines, fileSha256 } from "../util/files.js";
import { log } from "../util/log.js";
import { Progress } from "../util/progress.js";
import { Rng } from "../util/rng.js";
import { logPAttributes } from "./beta.js";
import { type SampleInfo, STEERLM2_KEY, sampleLine, targetWeights } from "./format.js";
import { jobKey, jobsDigest, readJobs, type SampleJob } from "./sample-jobs.js";
import { GgufScorer } from "./score.js";

/**
 * `steerlm steerlm2 sample`, the data half of SteerLM 2.0: n responses per (prompt, values) from the SFT
 * model Q', each scored three ways — log Q'(y|a,x) and the prior log P(y|x) in the engine (score.ts),
 * log P(a|x,y) from the regression APM through the Beta bins (beta.ts) — and weighted by the softmax of
 * their combination over the group (format.ts documents the file).
 *
 * The prior defaults to Q' itself prompted with the schema's default values instead of a: an
 * approximation of the unconditioned model, which SteerLM does not have (every SFT prompt carries values).
 *
 * Resumable as `steerlm bootstrap` is (src/apm/resume.ts): groups are written to `<out>.partial`, each
 * fsynced and then recorded in `<out>.partial.json`. Every sample's seed depends only on (seed, group,
 * sample), scoring evaluates each sequence alone and the APM's batch shape is fixed (n), so a resumed run
 * writes exactly the bytes of an uninterrupted one.
 */
export const STEERLM2_PROGRESS_FORMAT = "steerlm-steerlm2-sample-progress";

/** Options of `steerlm steerlm2 sample`. */
export interface SampleOptions {
  /** The SFT model Q' (GGUF) that samples and scores log Q'(y|a,x). */
  model: string;
  /** The regression APM (run directory or checkpoint) giving P(a|x,y). */
  apm: string;
  /** Prompts (any readable format); by default each record's response label is its a. */
  data: string;
  dataFormat?: DataFormat;
  output: string;
  /** The prior P(y|x) (GGUF); default: the SFT model prompted with the schema's default values. */
  prior?: string;
  /** `label` (default): each record's own values; `top`: drawn from the top-quality set, as bootstrap. */
  values?: "label" | "top";
  qualityKey?: string;
  /** The SFT model's schema; default: the GGUF's `steerlm.schema`, else steerlm. */
  schema?: string | AttributeSchema;
  /** Responses per (prompt, values). Default 4. */
  samples?: number;
  seed?: number;
  /** Default 1. */
  temperature?: number;
  /** Default 50. */
  topK?: number;
  maxTokens?: number;
  contextSize?: number;
  limit?: number;
  threads?: number;
  overwrite?: boolean;
  progress?: boolean;
  /** Milliseconds to wait after each group (lets tests interrupt a run at a known point). */
  throttleMs?: number;
}

export interface SampleResult {
  output: string;
  /** Prompts processed (this run and earlier interrupted ones). */
  prompts: number;
  /** Groups written (prompts minus those that did not fit the context). */
  groups: number;
  /** Lines written: groups × samples. */
  rows: number;
  samples: number;
  /** Prompts skipped because prompt + max tokens did not fit the context (this run). */
  skipped: number;
  /** Responses cut at max tokens (this run). */
  truncated: number;
  resumedPrompts: number;
  seconds: number;
}

type Settings = {
  model: string;
  prior: string | null;
  schema: string;
  values: string;
  combos: string | null;
  samples: number;
  seed: number;
  temperature: number;
  topK: number;
  maxTokens: number | null;
  contextSize: number;
};

interface Scorers {
  q: GgufScorer;
  prior: GgufScorer;
  apm: LoadedApm;
  predictor: ApmPredictor;
  /** For each attribute of the model's schema, its APM output. */
  outputs: number[];
}

export async function runSample(opts: SampleOptions): Promise<SampleResult> {
  const t0 = performance.now();
  const n = opts.samples ?? 4;
  if (!Number.isInteger(n) || n < 1)
    throw new InputError(`expected an integer ≥ 1, got ${n}`, { field: "--samples" });
  for (const [field, path] of [
    ["--data", opts.data],
    ["--apm", opts.apm],
    ["--prior", opts.prior],
  ] as const) {
    if (path !== undefined && !existsSync(path)) throw new InputError("no such file", { file: path, field });
  }
  const { partial, sidecar } = checkOutput(opts.output, opts.overwrite, "sample");
  const model = await SteerableModel.load({
    modelPath: opts.model,
    schema: opts.schema,
    contextSize: opts.contextSize,
    threads: opts.threads,
  });
  const freeLater: Array<() => unknown> = [() => model.dispose()];
  try {
    const schema = model.schema;
    const seed = opts.seed ?? 1;
    const mode = opts.values ?? "label";
    const { jobs, combos } = await readJobs({
      data: opts.data,
      format: opts.dataFormat,
      schema,
      mode,
      qualityKey: opts.qualityKey,
      seed,
      limit: opts.limit,
    });
    const apm = await loadApm(opts.apm, opts.threads);
    freeLater.push(() => apm.free());
    if (apm.info.variant !== "regression")
      throw new InputError(
        "a generative APM gives labels, not the real-valued predictions SteerLM 2.0 needs",
        { file: apm.checkpoint, field: "--apm" },
        "P(a|x,y) comes from a regression APM through a Beta distribution: train one with `steerlm apm train` (without --generative)",
      );
    outputSchemaForModel(apm, schema, opts.model);
    const q = await GgufScorer.load(opts.model, "--model", opts.threads);
    freeLater.push(() => q.free());
    let prior = q;
    if (opts.prior !== undefined) {
      prior = await GgufScorer.load(opts.prior, "--prior", opts.threads);
      freeLater.push(() => prior.free());
    }
    const predictor = new ApmPredictor(apm.backend, apm.model, n, apm.info.seqLen);
    freeLater.push(() => predictor.free());
    const outputs = schema.attributes.map((a) =>
      apm.info.schema.attributes.findIndex((b) => b.name === a.name),
    );
    const settings: Settings = {
      model: await fileSha256(opts.model),
      prior: opts.prior ? await fileSha256(opts.prior) : null,
      schema: JSON.stringify(schema),
      values: mode,
      combos,
      samples: n,
      seed,
      temperature: opts.temperature ?? 1,
      topK: opts.topK ?? 50,
      maxTokens: opts.maxTokens ?? null,
      contextSize: model.contextSize,
    };
    const r = await sampleAll(model, { q, prior, apm, predictor, outputs }, schema, jobs, settings, {
      ...opts,
      input: resolve(opts.data),
      partial,
      sidecar,
    });
    return { ...r, seconds: (performance.now() - t0) / 1000 };
  } finally {
    for (const f of freeLater.reverse()) await f();
  }
}

async function sampleAll(
  model: SteerableModel,
  scorers: Scorers,
  schema: AttributeSchema,
  jobs: readonly SampleJob[],
  settings: Settings,
  opts: SampleOptions & { input: string; partial: string; sidecar: string },
): Promise<Omit<SampleResult, "seconds">> {
  const n = settings.samples;
  const done = readResumeState(
    opts.partial,
    opts.sidecar,
    { input: opts.input, apm: scorers.apm.digest, settings },
    STEERLM2_PROGRESS_FORMAT,
  );
  const restart = `delete ${opts.partial} to start over`;
  if (done.rows > jobs.length)
    throw new InputError(
      `has ${jobs.length} prompts, fewer than the ${done.rows} already done`,
      { file: opts.input },
      restart,
    );
  const inHash = jobsDigest(jobs.slice(0, done.rows), schema);
  if (done.rows > 0 && inHash.copy().digest("hex") !== done.inputSha256)
    throw new InputError(
      `the first ${done.rows} prompts differ from the ones the partial output was made from`,
      { file: opts.input },
      restart,
    );
  const outHash = createHash("sha256");
  if (done.rows > 0) outHash.update(done.prefix);
  // Append mode: every write lands after the truncation point, whatever the file held before.
  const fd = openSync(opts.partial, "a");
  ftruncateSync(fd, done.outputBytes); // drops an unrecorded group and a torn last line
  let outBytes = done.outputBytes;
  let groups = countLines(done.prefix) / n;
  if (done.rows > 0) log.info(`resuming: ${done.rows} prompts already done in ${opts.partial}`);
  const progress = new Progress({
    label: "steerlm2 sample",
    total: jobs.length - done.rows,
    enabled: opts.progress,
  });
  let skipped = 0;
  let truncated = 0;
  try {
    for (let row = done.rows; row < jobs.length; row++) {
      const job = jobs[row] as SampleJob;
      inHash.update(`${jobKey(job, schema)}\n`);
      const drawn = await drawGroup(model, job, settings, row);
      if (drawn === null) {
        skipped++;
        const o = job.prompt.origin;
        log.warn(
          `${o ? `${o.file}:${o.line}: ` : ""}skipped: the prompt and --max-tokens do not fit the context of ${model.contextSize} tokens`,
        );
      } else {
        truncated += drawn.truncated;
        const lines = scoreGroup(scorers, schema, job, drawn.records, groups);
        const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(""), "utf8");
        writeAll(fd, bytes);
        outBytes += bytes.length;
        outHash.update(bytes);
        groups++;
      }
      fsyncSync(fd);
      writeSidecar(opts.sidecar, {
        format: STEERLM2_PROGRESS_FORMAT,
        version: 1,
        input: opts.input,
        apm: scorers.apm.digest,
        settings,
        rows: row + 1,
        outputBytes: outBytes,
        outputSha256: outHash.copy().digest("hex"),
        inputSha256: inHash.copy().digest("hex"),
      });
      progress.tick(1, { groups, skipped });
      if (opts.throttleMs) await new Promise((r) => setTimeout(r, opts.throttleMs));
    }
  } finally {
    progress.finish();
    closeSync(fd);
  }
  renameSync(opts.partial, opts.output);
  rmSync(opts.sidecar, { force: true });
  log.info(
    `steerlm2 sample: ${groups} groups of ${n} from ${jobs.length} prompts` +
      `${done.rows ? ` (${done.rows} resumed)` : ""}${skipped ? `, ${skipped} skipped` : ""}: ${opts.output}`,
  );
  return {
    output: opts.output,
    prompts: jobs.length,
    groups,
    rows: groups * n,
    samples: n,
    skipped,
    truncated,
    resumedPrompts: done.rows,
  };
}

/** The sampling seed of one response: 31 bits from (seed, group, sample) alone. */
export function sampleSeed(seed: number, row: number, sample: number): number {
  return new Rng(`steerlm2-generate:${seed}:${row}:${sample}`).u32() >>> 1;
}

/** n responses at the job's values, as records labelled with them; null when the prompt does not fit. */
async function drawGroup(
  model: SteerableModel,
  job: SampleJob,
  settings: Settings,
  row: number,
): Promise<{ records: DataRecord[]; truncated: number } | null> {
  const records: DataRecord[] = [];
  let truncated = 0;
  const extra = new Map(job.prompt.extra);
  extra.delete(STEERLM2_KEY);
  for (let i = 0; i < settings.samples; i++) {
    let result: Awaited<ReturnType<SteerableModel["generate"]>>;
    try {
      result = await model.generate({
        conversation: toConversation(job.prompt, model.schema),
        attributes: job.values,
        temperature: settings.temperature,
        topK: settings.topK,
        maxTokens: settings.maxTokens ?? undefined,
        seed: sampleSeed(settings.seed, row, i),
      });
    } catch (err) {
      if (err instanceof ContextLengthError) return null;
      throw err;
    }
    if (result.finishReason === "length") truncated++;
    records.push({
      system: job.prompt.system,
      turns: [...job.prompt.turns, { role: "assistant", text: result.text, labels: { ...job.values } }],
      extra,
      origin: job.prompt.origin,
    });
  }
  return { records, truncated };
}

/** The group's output lines: each response scored three ways, weighted by the softmax over the group. */
function scoreGroup(
  s: Scorers,
  schema: AttributeSchema,
  job: SampleJob,
  records: readonly DataRecord[],
  group: number,
): string[] {
  const n = records.length;
  const defaults: AttributeValues = withDefaults(schema, {});
  const K = s.apm.info.schema.attributes.length;
  const T = s.apm.info.seqLen;
  const examples = records.map((r) => ({
    ids: apmTokens(r, r.turns.length - 1, s.apm.tokenizer, s.apm.info.bos, T).ids,
    targets: new Float32Array(K),
  }));
  const pred = s.predictor.predict(packApmBatch(examples, n, T, K, s.apm.tokenizer.eosId ?? 0).batch);
  const terms = records.map((r, i) => {
    const logQ = s.q.score(r, schema).logProb;
    // The prior sees the same response after the same context, at the default values instead of a.
    const atDefaults: DataRecord = {
      ...r,
      turns: r.turns.map((t, k) => (k === r.turns.length - 1 ? { ...t, labels: defaults } : t)),
    };
    const logPrior = s.prior.score(atDefaults, schema).logProb;
    const logPAttrs = logPAttributes(
      schema.attributes.map((a, k) => ({
        value: job.values[a.name] as number,
        prediction: pred[i * K + (s.outputs[k] as number)] as number,
        min: a.min,
        max: a.max,
      })),
    );
    return { logQ, logPrior, logPAttrs };
  });
  const w = targetWeights(terms);
  return records.map((r, i) => {
    const info: SampleInfo = {
      group,
      sample: i,
      n,
      ...(terms[i] as (typeof terms)[number]),
      targetWeight: w[i] as number,
    };
    return sampleLine(r, info, schema);
  });
}
