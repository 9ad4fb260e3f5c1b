import { resolve } from "node:path";
import { outputSchemaForModel } from "../apm/annotate.js";
import { apmTokens } from "../apm/data.js";
import { ApmPredictor, type LoadedApm, loadApm } from "../apm/model.js";
import {
  type GenerationJobOptions,
  generateOrSkip,
  PartialOutput,
  retried,
  startGenerationJob,
} from "../apm/resume.js";
import { BOOTSTRAP_DEFAULTS } from "../bootstrap/run.js";
import { type AttributeSchema, type AttributeValues, withDefaults } from "../data/attributes.js";
import type { DataFormat, DataRecord } from "../data/record.js";
import { toConversation } from "../data/record.js";
import type { Generator } from "../inference/generator.js";
import { padTokenId } from "../tokenizer/types.js";
import { InputError } from "../util/errors.js";
import { countLines, fileSha256 } from "../util/files.js";
import { log } from "../util/log.js";
import { mapOrdered } from "../util/ordered.js";
import { Progress } from "../util/progress.js";
import { samplingSeed } from "../util/rng.js";
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
 * approximation of the unconditioned model, which SteerLM does not have (every SFT prompt carries values);
 * `priorValues: "none"` reads a prior trained without attributes with no value lines, the paper's P(y|x).
 *
 * Resumable as `steerlm bootstrap` is (src/apm/resume.ts): groups are written to `<out>.partial`, each
 * fsynced and then recorded in `<out>.partial.json`. Every sample's seed depends only on (seed, group,
 * sample), groups are written in their order however many are drawn at once (a remote engine's
 * `concurrency`), scoring evaluates each sequence alone and the APM's batch shape is fixed (n), so a
 * resumed run writes exactly the bytes of an uninterrupted one.
 */
export const STEERLM2_PROGRESS_FORMAT = "steerlm-steerlm2-sample-progress";

/**
 * Options of `steerlm steerlm2 sample`. `model` is the SFT model Q' that samples and scores log Q'(y|a,x)
 * (no LoRA: the engine that scores it reads one GGUF).
 */
export interface SampleOptions extends Omit<GenerationJobOptions, "lora"> {
  /** The regression APM (run directory or checkpoint) giving P(a|x,y). */
  apm: string;
  /** Prompts (any readable format); by default each record's response label is its a. */
  data: string;
  dataFormat?: DataFormat;
  /** The prior P(y|x) (GGUF); default: the SFT model prompted with the schema's default values. */
  prior?: string;
  /**
   * How the prior is prompted: "default" (the schema's default values in place of a; the SFT model as its own
   * prior) or "none" (no value lines: a model trained without attributes, the paper's P(y|x)).
   */
  priorValues?: PriorValues;
  /** `label` (default): each record's own values; `top`: drawn from the top-quality set, as bootstrap. */
  values?: "label" | "top";
  qualityKey?: string;
  /** Responses per (prompt, values). Default 4. */
  samples?: number;
  seed?: number;
  /** Default 1. */
  temperature?: number;
  /** Default 50. */
  topK?: number;
  maxTokens?: number;
  limit?: number;
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

export type PriorValues = "default" | "none";

type Settings = {
  model: string;
  prior: string | null;
  /** Present only when "none" (partial runs from before it keep their settings). */
  priorValues?: "none";
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
  priorValues: PriorValues;
  apm: LoadedApm;
  predictor: ApmPredictor;
  /** For each attribute of the model's schema, its APM output. */
  outputs: number[];
}

/** Library and CLI defaults: top-k 50 at temperature 1, as `steerlm bootstrap` samples. */
export const SAMPLE_DEFAULTS = {
  samples: 4,
  seed: 1,
  temperature: BOOTSTRAP_DEFAULTS.temperature,
  topK: BOOTSTRAP_DEFAULTS.topK,
};

export async function runSample(opts: SampleOptions): Promise<SampleResult> {
  const t0 = performance.now();
  if (opts.priorValues === "none" && opts.prior === undefined)
    throw new InputError(
      "reads a prior trained without attributes, and none was given (the SFT model itself was trained with value lines)",
      { setting: "priorValues" },
      "give --prior <gguf>, or drop it",
    );
  if (opts.qualityKey !== undefined && (opts.values ?? "label") !== "top")
    throw new InputError(
      "applies to --values top only",
      { setting: "qualityKey" },
      "drop it, or sample --values top",
    );
  const inputs = { data: opts.data, apm: opts.apm, prior: opts.prior };
  const n = opts.samples ?? SAMPLE_DEFAULTS.samples;
  const group = ["samples", n] as const;
  const { paths, model } = await startGenerationJob(opts, { inputs, again: "sample", group });
  const freeLater: Array<() => unknown> = [() => paths.lock.release(), () => model.dispose()];
  try {
    const schema = model.schema;
    const seed = opts.seed ?? SAMPLE_DEFAULTS.seed;
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
        { file: apm.checkpoint, setting: "apm" },
        "P(a|x,y) comes from a regression APM through a Beta distribution: train one with `steerlm apm train` (without --generative)",
      );
    outputSchemaForModel(apm.info.schema, schema, opts.model);
    const q = await GgufScorer.load(opts.model, "model", opts.threads);
    freeLater.push(() => q.free());
    let prior = q;
    if (opts.prior !== undefined) {
      prior = await GgufScorer.load(opts.prior, "prior", opts.threads);
      freeLater.push(() => prior.free());
    }
    const predictor = new ApmPredictor(apm.backend, apm.model, n, apm.info.seqLen, padTokenId(apm.tokenizer));
    freeLater.push(() => predictor.free());
    const outputs = schema.attributes.map((a) =>
      apm.info.schema.attributes.findIndex((b) => b.name === a.name),
    );
    const settings: Settings = {
      model: await fileSha256(opts.model),
      prior: opts.prior ? await fileSha256(opts.prior) : null,
      ...(opts.priorValues === "none" ? { priorValues: "none" as const } : {}),
      schema: JSON.stringify(schema),
      values: mode,
      combos,
      samples: n,
      seed,
      temperature: opts.temperature ?? SAMPLE_DEFAULTS.temperature,
      topK: opts.topK ?? SAMPLE_DEFAULTS.topK,
      maxTokens: opts.maxTokens ?? null,
      contextSize: model.contextSize,
    };
    const input = resolve(opts.data);
    const out = PartialOutput.open(paths, {
      format: STEERLM2_PROGRESS_FORMAT,
      input,
      apm: apm.digest,
      settings,
    });
    const priorValues = opts.priorValues ?? "default";
    const r = await sampleAll(
      model,
      { q, prior, priorValues, apm, predictor, outputs },
      schema,
      jobs,
      settings,
      out,
      {
        ...opts,
        input,
      },
    );
    return { ...r, seconds: (performance.now() - t0) / 1000 };
  } finally {
    for (const f of freeLater.reverse()) await f();
  }
}

async function sampleAll(
  model: Generator,
  scorers: Scorers,
  schema: AttributeSchema,
  jobs: readonly SampleJob[],
  settings: Settings,
  out: PartialOutput,
  opts: SampleOptions & { input: string },
): Promise<Omit<SampleResult, "seconds">> {
  const n = settings.samples;
  const done = out.done.rows;
  out.checkCount(opts.input, jobs.length, "prompts");
  const inHash = jobsDigest(jobs.slice(0, done), schema);
  out.checkPrefix(opts.input, inHash.copy().digest("hex"), "prompts");
  let groups = countLines(out.done.prefix) / n;
  const progress = new Progress({
    label: "steerlm2 sample",
    total: jobs.length - done,
    enabled: opts.progress,
  });
  let skipped = 0;
  let truncated = 0;
  let complete = false;
  try {
    // Enough groups at once to keep the generator's parallel slots busy (one group at a time here).
    const ahead = Math.ceil(model.parallel / n);
    const draws = mapOrdered(jobs.slice(done), ahead, (job, i, signal) =>
      drawGroup(model, job, settings, done + i, signal),
    );
    let row = done;
    for await (const drawn of draws) {
      const job = jobs[row] as SampleJob;
      inHash.update(`${jobKey(job, schema)}\n`);
      if (drawn === null) skipped++;
      else {
        truncated += drawn.truncated;
        out.append(scoreGroup(scorers, schema, job, drawn.records, groups));
        groups++;
      }
      out.record(++row, inHash.copy().digest("hex"));
      progress.tick(1, { groups, skipped, ...retried(model) });
      if (opts.throttleMs) await new Promise((r) => setTimeout(r, opts.throttleMs));
    }
    complete = true;
  } finally {
    progress.finish();
    out.close(complete ? opts.output : undefined);
  }
  log.info(
    `steerlm2 sample: ${groups} groups of ${n} from ${jobs.length} prompts` +
      `${done ? ` (${done} resumed)` : ""}${skipped ? `, ${skipped} skipped${done ? " in this run" : ""}` : ""}: ${opts.output}`,
  );
  return {
    output: opts.output,
    prompts: jobs.length,
    groups,
    rows: groups * n,
    samples: n,
    skipped,
    truncated,
    resumedPrompts: done,
  };
}

/** The sampling seed of one response: 31 bits from (seed, group, sample) alone. */
export function sampleSeed(seed: number, row: number, sample: number): number {
  return samplingSeed(`steerlm2-generate:${seed}:${row}:${sample}`);
}

/** n responses at the job's values, as records labelled with them; null when the prompt does not fit. */
async function drawGroup(
  model: Generator,
  job: SampleJob,
  settings: Settings,
  row: number,
  signal: AbortSignal,
): Promise<{ records: DataRecord[]; truncated: number } | null> {
  const conversation = toConversation(job.prompt, model.schema);
  const results = await generateOrSkip(model, job.prompt, () =>
    Promise.all(
      Array.from({ length: settings.samples }, (_, i) =>
        model.generate({
          conversation,
          attributes: job.values,
          temperature: settings.temperature,
          topK: settings.topK,
          maxTokens: settings.maxTokens ?? undefined,
          seed: sampleSeed(settings.seed, row, i),
          signal,
        }),
      ),
    ),
  );
  if (results === null) return null;
  const extra = new Map(job.prompt.extra);
  extra.delete(STEERLM2_KEY);
  const records = results.map((result) => ({
    system: job.prompt.system,
    turns: [
      ...job.prompt.turns,
      { role: "assistant" as const, text: result.text, labels: { ...job.values } },
    ],
    extra,
    origin: job.prompt.origin,
  }));
  return { records, truncated: results.filter((r) => r.finishReason === "length").length };
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
  const pred = s.predictor.predict(
    records.map((r) => apmTokens(r, r.turns.length - 1, s.apm.tokenizer, s.apm.info.bos, T).ids),
  );
  const terms = records.map((r, i) => {
    const logQ = s.q.score(r, schema).logProb;
    // The prior sees the same response after the same context: at the default values instead of a, or
    // with no value line anywhere (a model trained without attributes)
    const forPrior: DataRecord = {
      ...r,
      turns: r.turns.map((t, k) =>
        s.priorValues === "none"
          ? { ...t, labels: null }
          : k === r.turns.length - 1
            ? { ...t, labels: defaults }
            : t,
      ),
    };
    const logPrior = s.prior.score(forPrior, schema).logProb;
    const logPAttrs = logPAttributes(
      schema.attributes.map((a, k) => ({
        value: job.values[a.name]!,
        prediction: pred[i * K + s.outputs[k]!] as number,
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
      targetWeight: w[i]!,
    };
    return sampleLine(r, info, schema);
  });
}
