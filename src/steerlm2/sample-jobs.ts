import { createHash } from "node:crypto";
import { pickCombo, readTopCombos } from "../bootstrap/combos.js";
import { promptKey, promptOf, readPrompts } from "../bootstrap/prompts.js";
import { type AttributeSchema, type AttributeValues, withDefaults } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import { type DataFormat, type DataRecord, labelString } from "../data/record.js";
import { InputError } from "../util/errors.js";

/**
 * What SteerLM 2.0 samples for: (prompt x, attribute values a) pairs, one group of n responses each.
 * `label`: a is the values of the response the record had after its last user turn (the training data's
 * own label); `top`: a is drawn per prompt from the top-quality combinations, exactly as `steerlm
 * bootstrap` draws them (src/bootstrap/combos.ts). Missing attributes take the schema's defaults: the
 * model is prompted with a full value string, so a (and the label written) is that full set.
 */
export interface SampleJob {
  prompt: DataRecord;
  values: AttributeValues;
}

export interface ReadJobsOptions {
  data: string;
  format?: DataFormat;
  schema: AttributeSchema;
  mode: "label" | "top";
  qualityKey?: string;
  seed: number;
  limit?: number;
}

export interface Jobs {
  jobs: SampleJob[];
  /** SHA-256 of the top-quality set (`top`), null for `label`: a resumed run must draw from the same set. */
  combos: string | null;
}

export async function readJobs(opts: ReadJobsOptions): Promise<Jobs> {
  if (opts.mode === "top") {
    const top = await readTopCombos(opts.data, {
      schema: opts.schema,
      qualityKey: opts.qualityKey,
      format: opts.format,
    });
    const prompts = await readPrompts(opts.data, {
      schema: opts.schema,
      format: opts.format,
      limit: opts.limit,
    });
    const jobs = prompts.map((prompt, row) => ({
      prompt,
      values: withDefaults(opts.schema, pickCombo(top.combos, opts.seed, row)),
    }));
    return { jobs, combos: top.digest };
  }
  const jobs: SampleJob[] = [];
  for await (const record of readRecords(opts.data, {
    format: opts.format,
    schema: opts.schema,
    allowUnlabeled: true,
  })) {
    if (opts.limit !== undefined && jobs.length >= opts.limit) break;
    const prompt = promptOf(record);
    const at = prompt.turns.length; // the response after the last user turn
    const place = { file: record.origin?.file, line: record.origin?.line };
    const response = record.turns[at];
    if (response === undefined)
      throw new InputError(
        "the conversation ends with a user turn: there is no label to sample at",
        { ...place, field: "conversations" },
        "pass --values top to draw values from the top-quality set instead",
      );
    if (response.labels === null || Object.keys(response.labels).length === 0)
      throw new InputError(
        "the response has no attribute label to sample at",
        { ...place, field: `conversations[${at}].label` },
        "label the data first with `steerlm annotate`, or pass --values top",
      );
    jobs.push({ prompt, values: withDefaults(opts.schema, response.labels) });
  }
  if (jobs.length === 0) throw new InputError("no prompts", { file: opts.data });
  return { jobs, combos: null };
}

/** What identifies a job for the resume check: its prompt and values, not where it came from. */
export function jobKey(job: SampleJob, schema: AttributeSchema): string {
  return `${promptKey(job.prompt)}\t${labelString(job.values, schema)}`;
}

/** A SHA-256 over the jobs' keys, one a line (updated further as a run goes on). */
export function jobsDigest(
  jobs: readonly SampleJob[],
  schema: AttributeSchema,
): ReturnType<typeof createHash> {
  const h = createHash("sha256");
  for (const j of jobs) h.update(`${jobKey(j, schema)}\n`);
  return h;
}
