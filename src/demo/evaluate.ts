import {
  type AdherenceReport,
  type AdherenceSample,
  type AttributeAdherence,
  measureAdherence,
} from "../eval/adherence.js";
import { SteerableModel } from "../inference/model.js";
import type { Companions } from "../steerbench/derived.js";

/**
 * Steerability on held-out prompts: `eval adherence` on a GGUF, as the demo runs it: for each attribute and
 * each requested level (the others at the schema's defaults, or for a derived attribute at its companions:
 * src/steerbench/derived.ts), generate greedily and measure the response with the SteerBench oracle.
 */
export type AttributeResult = AttributeAdherence;
export type Sample = AdherenceSample;
export type SteerabilityReport = AdherenceReport;

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
  const parallel = opts.parallel ?? 1;
  const model = await SteerableModel.load({ modelPath: opts.modelPath, parallel, threads: 1 });
  try {
    return await measureAdherence({
      model,
      prompts: opts.prompts.map((prompt) => ({ prompt, system: opts.system })),
      attributes: opts.attributes,
      companions: opts.companions,
      maxTokens: opts.maxTokens,
      parallel,
      progress: opts.progress,
    });
  } finally {
    await model.dispose();
  }
}
