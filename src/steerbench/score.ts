import {
  type AttributeValues,
  BUILTIN_SCHEMAS,
  formatValues,
  STEERLM_ATTRIBUTE_ORDER,
} from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import type { DataFormat } from "../data/record.js";
import { writeFileAtomic } from "../util/atomic.js";
import { scoreResponse } from "./oracle.js";

/**
 * Scores the last assistant turn of each conversation in a file and compares with its labels. Any
 * format the data layer reads works (SteerLM JSONL, HelpSteer, chat, ...); labels are optional.
 */

export interface AgreementStat {
  /** Rows whose label gives this attribute. */
  n: number;
  /** Share (0..1) of those rows where the oracle equals the label. */
  exact: number;
  /** Share (0..1) where the oracle is within ±1 of the label. */
  within1: number;
}

export interface RowScore {
  line: number;
  scores: AttributeValues;
  /** The scores as a value string, ready to use as a label. */
  values: string;
  /** The row's own label for that turn, if it had one. */
  label: AttributeValues | null;
}

export interface ScoreSummary {
  file: string;
  /** Conversations read from the file (a HelpSteer2 preference row gives two). */
  rows: number;
  /** Conversations with an assistant turn (the others are skipped). */
  scored: number;
  /** Scored rows whose last assistant turn has a label. */
  labelled: number;
  /** Per attribute, over the labelled rows that give it. */
  agreement: Record<string, AgreementStat>;
  /** Mean oracle score per attribute over the scored rows. */
  mean: Record<string, number>;
}

export interface ScoreFileOptions {
  /** Input format; detected from the file when absent. */
  format?: DataFormat;
  /** Told about bytes (JSONL) or rows (Parquet) read since the last call. */
  onProgress?: (n: number) => void;
}

export async function scoreFile(
  file: string,
  opts: ScoreFileOptions = {},
): Promise<{ rows: RowScore[]; summary: ScoreSummary }> {
  const reader = readRecords(file, {
    format: opts.format,
    allowUnlabeled: true,
    onProgress: opts.onProgress,
  });
  const rows: RowScore[] = [];
  const sums: Record<string, number> = {};
  const counts: Record<string, { n: number; exact: number; within1: number }> = {};
  let labelled = 0;
  let records = 0;
  for await (const record of reader) {
    records++;
    const line = record.origin?.line ?? records;
    const turns = record.turns;
    const k = turns.findLastIndex((t) => t.role === "assistant");
    const response = turns[k];
    if (response === undefined) continue;
    const user = turns.slice(0, k).findLast((t) => t.role === "user");
    const scores = scoreResponse(user?.text ?? "", response.text);
    const given = response.labels;
    const label = given && Object.keys(given).length > 0 ? given : null;
    if (label) labelled++;
    for (const name of STEERLM_ATTRIBUTE_ORDER) {
      sums[name] = (sums[name] ?? 0) + scores[name];
      const want = label?.[name];
      if (want !== undefined) {
        const c = counts[name] ?? { n: 0, exact: 0, within1: 0 };
        counts[name] = c;
        c.n++;
        if (scores[name] === want) c.exact++;
        if (Math.abs(scores[name] - want) <= 1) c.within1++;
      }
    }
    rows.push({
      line,
      scores,
      values: formatValues(BUILTIN_SCHEMAS.steerlm, scores),
      label,
    });
  }
  const agreement: Record<string, AgreementStat> = {};
  const mean: Record<string, number> = {};
  for (const name of STEERLM_ATTRIBUTE_ORDER) {
    const c = counts[name];
    if (c) agreement[name] = { n: c.n, exact: c.exact / c.n, within1: c.within1 / c.n };
    mean[name] = rows.length ? (sums[name] ?? 0) / rows.length : 0;
  }
  return {
    rows,
    summary: { file, rows: records, scored: rows.length, labelled, agreement, mean },
  };
}

export function writeRowScores(path: string, rows: RowScore[]): void {
  writeFileAtomic(path, rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""));
}
