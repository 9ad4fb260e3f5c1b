import type { AttributeSchema } from "../data/attributes.js";
import { type Json, JsonNumber, type JsonObject } from "../data/json.js";
import { readRecords } from "../data/read.js";
import type { DataRecord } from "../data/record.js";
import { recordLines } from "../data/write.js";
import { InputError } from "../util/errors.js";
import { softmax } from "../util/numbers.js";

/**
 * The file `steerlm steerlm2 sample` writes and SteerLM 2.0 training reads: SteerLM JSONL (NeMo
 * compatible; readers keep unknown keys) with one line per sampled response, the n samples of a
 * (prompt, values) group on consecutive lines, and one extra top-level key per line:
 *
 *   "steerlm2": {"group": 0, "sample": 1, "n": 4, "log_q": -31.2, "log_prior": -30.9,
 *                "log_p_attrs": -4.1, "target_weight": 0.27}
 *
 * - the record's last turn is the sampled response y, labelled with the values a it was drawn at;
 * - `log_q`: log Q'(y|a,x), summed over exactly the tokens `steerlm sft` trains for this record
 *   (the response and its turn terminator), under the SFT model that sampled it;
 * - `log_prior`: log P(y|x) under the prior model (see sample.ts for the default);
 * - `log_p_attrs`: log P(a|x,y) from the regression APM through the Beta bins (beta.ts);
 * - `target_weight`: softmax over the group of `log_p_attrs + log_prior − log_q`, so a group's weights
 *   sum to 1. Floats are written as Python's repr (shortest round-trip text), so they read back exactly.
 */
export const STEERLM2_KEY = "steerlm2";

export interface SampleInfo {
  /** 0-based index of the (prompt, values) group in the file. */
  group: number;
  /** 0-based index of the sample within its group. */
  sample: number;
  /** Samples in the group. */
  n: number;
  logQ: number;
  logPrior: number;
  logPAttrs: number;
  targetWeight: number;
}

export interface Steerlm2Sample {
  /** The conversation: prompt turns plus the sampled, labelled response; `extra` keeps the steerlm2 key. */
  record: DataRecord;
  info: SampleInfo;
}

export interface Steerlm2Group {
  group: number;
  samples: Steerlm2Sample[];
}

/** How far a group's weights may be from summing to 1 before the reader refuses the file. */
export const WEIGHT_SUM_TOLERANCE = 1e-6;

/** softmax_i(logPAttrs_i + logPrior_i − logQ_i): SteerLM 2.0's target weights for one group. */
export function targetWeights(
  terms: ReadonlyArray<Pick<SampleInfo, "logPAttrs" | "logPrior" | "logQ">>,
): number[] {
  const z = terms.map((t) => t.logPAttrs + t.logPrior - t.logQ);
  if (!Number.isFinite(Math.max(...z)))
    throw new RangeError(`targetWeights: no finite log-weight in ${z.join(", ")}`);
  return softmax(z);
}

/** The `steerlm2` value of one line, keys in the documented order. */
export function infoJson(info: SampleInfo): JsonObject {
  return new Map<string, Json>([
    ["group", JsonNumber.int(info.group)],
    ["sample", JsonNumber.int(info.sample)],
    ["n", JsonNumber.int(info.n)],
    ["log_q", JsonNumber.float(info.logQ)],
    ["log_prior", JsonNumber.float(info.logPrior)],
    ["log_p_attrs", JsonNumber.float(info.logPAttrs)],
    ["target_weight", JsonNumber.float(info.targetWeight)],
  ]);
}

/** One output line (no newline): the record as SteerLM JSONL with the `steerlm2` key last. */
export function sampleLine(record: DataRecord, info: SampleInfo, schema?: AttributeSchema): string {
  const extra = new Map(record.extra);
  extra.delete(STEERLM2_KEY);
  if (record.layout?.format !== "steerlm") {
    // The writer adds NeMo's `mask` and `type` after the extra keys of a new record; set them first so
    // that `steerlm2` is the last key of every line, whatever format the prompt came from.
    if (!extra.has("mask")) extra.set("mask", "User");
    if (!extra.has("type")) extra.set("type", "VALUE_TO_TEXT");
  }
  extra.set(STEERLM2_KEY, infoJson(info));
  const lines = recordLines({ ...record, extra }, "steerlm", { schema });
  const [line] = lines;
  if (line === undefined || lines.length !== 1)
    throw new Error(`sampleLine: expected one line, got ${lines.length}`);
  return line;
}

/** Reads and checks the `steerlm2` key of a record read from `file` (errors name file:line:field). */
export function parseInfo(record: DataRecord): SampleInfo {
  const place = { file: record.origin?.file, line: record.origin?.line };
  const v = record.extra.get(STEERLM2_KEY);
  if (!(v instanceof Map))
    throw new InputError(`expected an object (a line written by \`steerlm steerlm2 sample\`)`, {
      ...place,
      field: STEERLM2_KEY,
    });
  const num = (key: string, kind: "int" | "float"): number => {
    const field = `${STEERLM2_KEY}.${key}`;
    const x = v.get(key);
    if (!(x instanceof JsonNumber)) throw new InputError("expected a number", { ...place, field });
    const n = x.value;
    if (!Number.isFinite(n))
      throw new InputError(`expected a finite number, got ${x.text}`, { ...place, field });
    if (kind === "int" && (!x.isInt || n < 0))
      throw new InputError(`expected an integer ≥ 0, got ${x.text}`, { ...place, field });
    return n;
  };
  const info: SampleInfo = {
    group: num("group", "int"),
    sample: num("sample", "int"),
    n: num("n", "int"),
    logQ: num("log_q", "float"),
    logPrior: num("log_prior", "float"),
    logPAttrs: num("log_p_attrs", "float"),
    targetWeight: num("target_weight", "float"),
  };
  if (info.n < 1 || info.sample >= info.n)
    throw new InputError(`sample ${info.sample} is not below n = ${info.n}`, {
      ...place,
      field: `${STEERLM2_KEY}.sample`,
    });
  if (info.targetWeight < 0 || info.targetWeight > 1)
    throw new InputError(`target weight ${info.targetWeight} is outside 0..1`, {
      ...place,
      field: `${STEERLM2_KEY}.target_weight`,
    });
  const last = record.turns.at(-1);
  if (last?.role !== "assistant" || last.labels === null)
    throw new InputError("the last turn must be the sampled response, labelled with its values", {
      ...place,
      field: "conversations",
    });
  return info;
}

export interface ReadSamplesOptions {
  /** The schema the labels are read with (the SFT model's). Default: steerlm. */
  schema?: AttributeSchema | string;
}

/**
 * Reads a steerlm2 file group by group, checking its layout: groups numbered 0, 1, … in order, each
 * with samples 0..n−1 on consecutive lines, the same prompt and values, and weights summing to 1.
 */
export async function* readSamples(
  path: string,
  opts: ReadSamplesOptions = {},
): AsyncGenerator<Steerlm2Group, void, undefined> {
  let current: Steerlm2Group | null = null;
  let expectGroup = 0;
  const close = (g: Steerlm2Group, line: number | undefined): Steerlm2Group => {
    const n = g.samples[0]?.info.n ?? 0;
    if (g.samples.length !== n)
      throw new InputError(`group ${g.group} has ${g.samples.length} samples, not n = ${n}`, {
        file: path,
        line,
        field: `${STEERLM2_KEY}.group`,
      });
    const sum = g.samples.reduce((s, x) => s + x.info.targetWeight, 0);
    if (Math.abs(sum - 1) > WEIGHT_SUM_TOLERANCE)
      throw new InputError(`group ${g.group}'s target weights sum to ${sum}, not 1`, {
        file: path,
        line,
        field: `${STEERLM2_KEY}.target_weight`,
      });
    return g;
  };
  let lastLine: number | undefined;
  for await (const record of readRecords(path, { format: "steerlm", schema: opts.schema })) {
    const info = parseInfo(record);
    const line = record.origin?.line;
    if (current !== null && info.group !== current.group) {
      yield close(current, lastLine);
      current = null;
    }
    if (current === null) {
      if (info.group !== expectGroup || info.sample !== 0)
        throw new InputError(
          `expected sample 0 of group ${expectGroup}, got sample ${info.sample} of group ${info.group}`,
          { file: path, line, field: STEERLM2_KEY },
        );
      expectGroup++;
      current = { group: info.group, samples: [{ record, info }] };
    } else {
      const first = current.samples[0] as Steerlm2Sample;
      if (info.sample !== current.samples.length || info.n !== first.info.n)
        throw new InputError(
          `expected sample ${current.samples.length} of ${first.info.n}, got sample ${info.sample} of ${info.n}`,
          { file: path, line, field: STEERLM2_KEY },
        );
      if (promptOf(record) !== promptOf(first.record))
        throw new InputError(`a sample of group ${info.group} has another prompt or values than sample 0`, {
          file: path,
          line,
          field: "conversations",
        });
      current.samples.push({ record, info });
    }
    lastLine = line;
  }
  if (current !== null) yield close(current, lastLine);
}

/** Everything a group's samples share: the turns before the response, and the response's values. */
function promptOf(r: DataRecord): string {
  const turns = r.turns.slice(0, -1).map((t) => [t.role, t.text, t.labels]);
  return JSON.stringify([r.system, turns, r.turns.at(-1)?.labels]);
}
