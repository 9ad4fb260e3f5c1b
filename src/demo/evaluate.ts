import type { AttributeValues } from "../data/attributes.js";
import { spearman } from "../eval/spearman.js";
import { SWEEP_DEFAULTS } from "../eval/sweep.js";
import { SteerableModel } from "../inference/model.js";
import { type Companions, requestFor } from "../steerbench/derived.js";
import { scoreResponse } from "../steerbench/oracle.js";
import { Progress } from "../util/progress.js";

/**
 * Steerability on held-out prompts: for each attribute and each requested level (the others at the
 * schema's defaults, or for a derived attribute at its companions: src/steerbench/derived.ts), generate greedily and measure the response with the SteerBench oracle.
 */
export interface AttributeResult {
  /** Spearman correlation of the requested levels with the oracle-measured means per level. */
  spearman: number;
  requested: number[];
  /** Oracle-measured mean at each requested level. */
  measured: number[];
  /** Spearman over every (requested, measured) pair of single responses: stricter than over the means. */
  spearmanSamples: number;
  /** Share of responses whose measured value equals the requested one. */
  exact: number;
}

export interface Sample {
  /** The attribute this generation's sweep varies, and its requested level (the rest at defaults). */
  sweep: string;
  level: number;
  prompt: string;
  attributes: AttributeValues;
  values: string;
  response: string;
  measured: AttributeValues;
}

export interface SteerabilityReport {
  attributes: Record<string, AttributeResult>;
  prompts: number;
  generations: number;
  generatedTokens: number;
  seconds: number;
  /** Every generation (for the contrasting samples and for inspection). */
  samples: Sample[];
}

export interface EvaluateOptions {
  modelPath: string;
  prompts: readonly string[];
  system: string;
  /** Attributes to sweep; default: all of the model's schema. */
  attributes?: readonly string[];
  /** Most tokens per response (default: the sweep's, SWEEP_DEFAULTS). */
  maxTokens?: number;
  /** Settings that come with each level of a derived attribute (companionsFrom); others: defaults. */
  companions?: Companions;
  /**
   * Concurrent sequences in node-llama-cpp's batch. Default 1: with several, llama.cpp's greedy outputs
   * depend on which sequences share a batch (two runs disagreed on 573 of 900 responses), so the table
   * would not be reproducible; one at a time costs ~20% more time here.
   */
  parallel?: number;
  progress?: boolean;
}

export async function evaluateSteerability(opts: EvaluateOptions): Promise<SteerabilityReport> {
  const t0 = performance.now();
  const model = await SteerableModel.load({
    modelPath: opts.modelPath,
    parallel: opts.parallel ?? 1,
    threads: 1,
  });
  try {
    const defs = model.schema.attributes.filter((a) => !opts.attributes || opts.attributes.includes(a.name));
    const jobs: Array<{ attr: string; level: number; prompt: string }> = [];
    for (const def of defs) {
      for (let level = def.min; level <= def.max; level++) {
        for (const prompt of opts.prompts) jobs.push({ attr: def.name, level, prompt });
      }
    }
    const progress = new Progress({ label: "steering", total: jobs.length, enabled: opts.progress });
    let generatedTokens = 0;
    const samples: Sample[] = await Promise.all(
      jobs.map(async (job) => {
        const r = await model.generate({
          conversation: { system: opts.system, turns: [{ role: "user", text: job.prompt }] },
          attributes: requestFor(opts.companions, job.attr, job.level),
          maxTokens: opts.maxTokens ?? SWEEP_DEFAULTS.maxTokens,
          temperature: 0,
        });
        generatedTokens += r.usage.completionTokens;
        progress.tick(1);
        const response = r.text.trim();
        return {
          sweep: job.attr,
          level: job.level,
          prompt: job.prompt,
          attributes: r.attributes,
          values: r.values,
          response,
          measured: scoreResponse(job.prompt, response),
        };
      }),
    );
    progress.finish();
    const attributes: Record<string, AttributeResult> = {};
    for (const def of defs) {
      const mine = samples.filter((s) => s.sweep === def.name);
      const requested: number[] = [];
      const measured: number[] = [];
      for (let level = def.min; level <= def.max; level++) {
        const at = mine.filter((s) => s.level === level).map((s) => s.measured[def.name]!);
        requested.push(level);
        measured.push(at.reduce((a, b) => a + b, 0) / Math.max(1, at.length));
      }
      attributes[def.name] = {
        spearman: spearman(requested, measured),
        requested,
        measured,
        spearmanSamples: spearman(
          mine.map((s) => s.level),
          mine.map((s) => s.measured[def.name]!),
        ),
        exact: mine.filter((s) => s.measured[def.name] === s.level).length / Math.max(1, mine.length),
      };
    }
    return {
      attributes,
      prompts: opts.prompts.length,
      generations: jobs.length,
      generatedTokens,
      seconds: (performance.now() - t0) / 1000,
      samples,
    };
  } finally {
    await model.dispose();
  }
}
