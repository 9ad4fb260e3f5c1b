import type { AttributeValues } from "../data/attributes.js";
import { renderConversation } from "../data/template.js";
import { SteerableModel } from "../inference/model.js";
import { toNemoLine } from "../steerbench/jsonl.js";
import { scoreResponse } from "../steerbench/oracle.js";
import type { SynthResult } from "../steerbench/synth.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { readInputText } from "../util/files.js";
import { Progress } from "../util/progress.js";

/**
 * Generation for judging and steering: greedy responses of one arm's model, written as SteerLM JSONL
 * (`steerlm bench score` re-scores them) with the value string each was asked for (null: a plain-SFT
 * arm, asked the bare prompt) and what the report needs to regroup them (arm, seed, split; the
 * generator's reference response; the steering sweep and level).
 */
export type JudgeSplit = "test" | "heldout";

export interface GenerationRow {
  system: string;
  prompt: string;
  response: string;
  /** The value string asked for; null: no value line (plain SFT). */
  values: string | null;
  arm: string;
  seed: number;
  split: JudgeSplit;
  /** The generator's own response to the prompt in that split (judging rows). */
  reference?: string;
  /** The attribute a steering row sweeps, and its requested level. */
  sweep?: string;
  level?: number;
}

export interface Job {
  system: string;
  prompt: string;
  /** Requested settings; null: the bare prompt. */
  attributes: AttributeValues | null;
  split: JudgeSplit;
  reference?: string;
  sweep?: string;
  level?: number;
}

/** The first `n` single-turn conversations of a split: prompt, system and the generator's response. */
export function judgePrompts(bench: SynthResult, split: JudgeSplit, n: number) {
  return bench.splits[split]
    .filter((c) => c.turns.length === 2)
    .slice(0, n)
    .map((c) => ({
      system: c.system,
      prompt: (c.turns[0] as { text: string }).text,
      reference: (c.turns[1] as { text: string }).text,
    }));
}

/** Runs every job on one model (one sequence at a time: greedy outputs stay reproducible). */
export async function generateRows(
  modelPath: string,
  jobs: readonly Job[],
  meta: { arm: string; seed: number; maxTokens: number; progress?: boolean; label: string },
): Promise<GenerationRow[]> {
  const model = await SteerableModel.load({ modelPath, threads: 1 });
  const progress = new Progress({ label: meta.label, total: jobs.length, enabled: meta.progress });
  try {
    const rows: GenerationRow[] = [];
    for (const job of jobs) {
      const conversation = { system: job.system, turns: [{ role: "user" as const, text: job.prompt }] };
      let text: string;
      let values: string | null = null;
      if (job.attributes === null) {
        const prompt = renderConversation(conversation, "inference", { values: null }).text;
        text = (
          await model.complete({ prompt, specialTokens: true, maxTokens: meta.maxTokens, temperature: 0 })
        ).text;
      } else {
        const r = await model.generate({
          conversation,
          attributes: job.attributes,
          maxTokens: meta.maxTokens,
          temperature: 0,
        });
        text = r.text;
        values = r.values;
      }
      rows.push({
        system: job.system,
        prompt: job.prompt,
        response: text.trim(),
        values,
        arm: meta.arm,
        seed: meta.seed,
        split: job.split,
        ...(job.reference !== undefined && { reference: job.reference }),
        ...(job.sweep !== undefined && { sweep: job.sweep, level: job.level }),
      });
      progress.tick(1);
    }
    progress.finish();
    return rows;
  } finally {
    await model.dispose();
  }
}

/** A row as SteerLM JSONL: the NeMo shape plus the row's own keys. */
export function rowLine(r: GenerationRow): string {
  const conv = {
    system: r.system,
    turns: [
      { role: "user" as const, text: r.prompt },
      { role: "assistant" as const, text: r.response, values: r.values },
    ],
  };
  const { system: _s, prompt: _p, response: _r, values: _v, ...extra } = r;
  return JSON.stringify({ ...JSON.parse(toNemoLine(conv)), ...extra });
}

export function writeRows(path: string, rows: readonly GenerationRow[]): void {
  writeFileAtomic(path, rows.map((r) => `${rowLine(r)}\n`).join(""));
}

/** Rows back from a file `writeRows` wrote. */
export function readRows(path: string): GenerationRow[] {
  return readInputText(path)
    .split("\n")
    .map((l, i) => ({ l, line: i + 1 }))
    .filter(({ l }) => l !== "")
    .map(({ l, line }) => {
      let o: Omit<GenerationRow, "prompt" | "response" | "values"> & {
        conversations: Array<{ value: string; label: string | null }>;
      };
      try {
        o = JSON.parse(l);
      } catch (err) {
        throw new InputError(
          `not a row this run wrote: ${(err as Error).message}`,
          { file: path, line },
          "start the run again in another -o",
        );
      }
      if (
        typeof o !== "object" ||
        o === null ||
        !Array.isArray(o.conversations) ||
        o.conversations.length < 2
      )
        throw new InputError(
          "not a row this run wrote: no user and assistant turns",
          { file: path, line },
          "start the run again in another -o",
        );
      const { conversations, mask: _m, type: _t, ...rest } = o as typeof o & { mask: unknown; type: unknown };
      return {
        ...rest,
        prompt: (conversations[0] as { value: string }).value,
        response: (conversations[1] as { value: string }).value,
        values: (conversations[1] as { label: string | null }).label,
      };
    });
}

/** The oracle's scores of a row's response (and of its reference). */
export const scoreOf = (r: GenerationRow): AttributeValues => scoreResponse(r.prompt, r.response);
export const referenceScoreOf = (r: GenerationRow): AttributeValues =>
  scoreResponse(r.prompt, r.reference ?? "");
