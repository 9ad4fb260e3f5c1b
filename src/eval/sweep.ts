import { existsSync } from "node:fs";
import type { AttributeValues } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import type { Generator } from "../inference/generator.js";
import type { ContrastMode } from "../inference/mixture.js";
import { scoreResponse } from "../steerbench/oracle.js";
import { BENCH_SYSTEM_PROMPT, synthesize } from "../steerbench/synth.js";
import { InputError } from "../util/errors.js";
import { Progress } from "../util/progress.js";
import type { BatchMeasurer } from "./apm-measure.js";

/**
 * Generate-and-measure, shared by `eval adherence` and `eval pareto`: each job is one prompt at one
 * setting of the attributes, decoded greedily (with guidance when asked), its reply measured by the
 * SteerBench oracle, or by an APM over all replies at once.
 */
export type Measurer = (prompt: string, response: string) => AttributeValues;

export interface SweepJob {
  attributes: AttributeValues;
  prompt: string;
  system: string;
}

export interface SweepResult {
  values: string;
  response: string;
  measured: AttributeValues;
}

export interface SweepOptions {
  model: Pick<Generator, "generate">;
  maxTokens?: number;
  /** Attribute guidance strength (default 0: none) and its contrast. */
  guidance?: number;
  contrast?: ContrastMode;
  /** Default: the SteerBench oracle. */
  measure?: Measurer;
  /** A measurer over all responses at once (an APM); replaces `measure`. */
  measureBatch?: BatchMeasurer;
  /** Generations at once (up to the model's parallel sequences). */
  parallel?: number;
  progress?: boolean;
  label: string;
}

export interface Sweep {
  results: SweepResult[];
  /** Tokens generated over all replies, and the seconds spent generating them (measuring excluded). */
  generatedTokens: number;
  generationSeconds: number;
}

export const SWEEP_DEFAULTS = { maxTokens: 200 };

export async function runSweep(jobs: readonly SweepJob[], opts: SweepOptions): Promise<Sweep> {
  const t0 = performance.now();
  const measure = opts.measure ?? scoreResponse;
  const progress = new Progress({ label: opts.label, total: jobs.length, enabled: opts.progress });
  const results: SweepResult[] = new Array(jobs.length);
  let next = 0;
  let generatedTokens = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      const job = jobs[i] as SweepJob;
      const r = await opts.model.generate({
        conversation: { system: job.system, turns: [{ role: "user", text: job.prompt }] },
        attributes: job.attributes,
        guidance: opts.guidance,
        contrast: opts.contrast,
        maxTokens: opts.maxTokens ?? SWEEP_DEFAULTS.maxTokens,
        temperature: 0,
      });
      generatedTokens += r.tokens.length;
      const response = r.text.trim();
      results[i] = {
        values: r.values,
        response,
        measured: opts.measureBatch ? {} : measure(job.prompt, response),
      };
      progress.tick(1);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 1) }, worker));
  progress.finish();
  const generationSeconds = (performance.now() - t0) / 1000;
  if (opts.measureBatch) {
    const measured = await opts.measureBatch(
      results.map((x, i) => ({
        system: (jobs[i] as SweepJob).system,
        prompt: (jobs[i] as SweepJob).prompt,
        response: x.response,
      })),
    );
    for (const [i, m] of measured.entries()) (results[i] as SweepResult).measured = m;
  }
  return { results, generatedTokens, generationSeconds };
}

export interface SweepPrompt {
  prompt: string;
  system: string;
}

/**
 * `n` prompts for a sweep: the first user turn of each record of `file` (any format `data` reads), or,
 * without a file, SteerBench's held-out split (a task family never seen in training), single-turn.
 */
export async function sweepPrompts(file: string | undefined, n: number): Promise<SweepPrompt[]> {
  if (file === undefined) {
    // The held-out family is a small share of the synthesis: synthesize more until n single-turn ones exist.
    for (let size = Math.max(200, n * 40); ; size *= 2) {
      const heldout = synthesize({ n: size, seed: 1 }).splits.heldout.filter((c) => c.turns.length === 2);
      if (heldout.length >= n)
        return heldout
          .slice(0, n)
          .map((c) => ({ prompt: (c.turns[0] as { text: string }).text, system: BENCH_SYSTEM_PROMPT }));
    }
  }
  if (!existsSync(file)) throw new InputError("no such file", { file, setting: "prompts" });
  const out: SweepPrompt[] = [];
  for await (const rec of readRecords(file, { allowUnlabeled: true })) {
    const user = rec.turns.find((t) => t.role === "user");
    if (user) out.push({ prompt: user.text, system: rec.system });
    if (out.length >= n) break;
  }
  if (out.length === 0) throw new InputError("no prompts", { file, setting: "prompts" });
  return out;
}
