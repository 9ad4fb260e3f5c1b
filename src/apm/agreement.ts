import type { AttributeSchema } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import type { DataRecord } from "../data/record.js";
import { InputError } from "../util/errors.js";

/**
 * How well predicted labels agree with reference labels, per attribute: the share of assistant turns where
 * they are equal, and where they differ by at most one step. The two files must hold the same
 * conversations in the same order (an annotated copy of the reference, typically); turns where either
 * side lacks the attribute are not counted.
 */
export interface AttributeAgreement {
  name: string;
  /** Turns where both sides have a value. */
  n: number;
  exact: number;
  within1: number;
  /** Mean absolute difference. */
  mae: number;
}

export interface AgreementReport {
  turns: number;
  attributes: AttributeAgreement[];
}

export async function labelAgreement(
  predicted: string,
  reference: string,
  schema: AttributeSchema,
): Promise<AgreementReport> {
  const read = async (path: string) => {
    const out: DataRecord[] = [];
    for await (const r of readRecords(path, { schema, allowUnlabeled: true })) out.push(r);
    return out;
  };
  const [pred, ref] = await Promise.all([read(predicted), read(reference)]);
  if (pred.length !== ref.length) {
    throw new InputError(`has ${pred.length} conversations, the reference ${ref.length}`, {
      file: predicted,
    });
  }
  const stats = schema.attributes.map((a) => ({ name: a.name, n: 0, exact: 0, within1: 0, abs: 0 }));
  let turns = 0;
  pred.forEach((p, i) => {
    const r = ref[i];
    const same =
      r !== undefined &&
      p.system === r.system &&
      p.turns.length === r.turns.length &&
      p.turns.every((t, j) => t.role === r.turns[j]?.role && t.text === r.turns[j]?.text);
    if (!same) {
      throw new InputError(
        `conversation differs from line ${r?.origin?.line ?? i + 1} of the reference`,
        { file: predicted, line: p.origin?.line ?? i + 1 },
        "compare an annotated file with the file it was annotated from",
      );
    }
    p.turns.forEach((t, j) => {
      const want = r?.turns[j]?.labels;
      if (t.role !== "assistant" || !t.labels || !want) return;
      turns++;
      for (const s of stats) {
        const a = t.labels[s.name];
        const b = want[s.name];
        if (a === undefined || b === undefined) continue;
        s.n++;
        const d = Math.abs(a - b);
        if (d === 0) s.exact++;
        if (d <= 1) s.within1++;
        s.abs += d;
      }
    });
  });
  return {
    turns,
    attributes: stats.map((s) => ({
      name: s.name,
      n: s.n,
      exact: s.n ? s.exact / s.n : 0,
      within1: s.n ? s.within1 / s.n : 0,
      mae: s.n ? s.abs / s.n : 0,
    })),
  };
}

/** A fixed-width table: attribute, n, exact %, ±1 %, MAE, and the mean over attributes. */
export function formatAgreement(r: AgreementReport): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
  const rows = r.attributes.filter((a) => a.n > 0);
  const mean = (f: (a: AttributeAgreement) => number) =>
    rows.reduce((s, a) => s + f(a), 0) / Math.max(1, rows.length);
  return [
    `${"attribute".padEnd(12)} ${"n".padStart(6)}   exact     ±1    MAE`,
    ...rows.map(
      (a) =>
        `${a.name.padEnd(12)} ${String(a.n).padStart(6)} ${pct(a.exact)} ${pct(a.within1)} ${a.mae.toFixed(3).padStart(6)}`,
    ),
    `${"mean".padEnd(12)} ${"".padStart(6)} ${pct(mean((a) => a.exact))} ${pct(mean((a) => a.within1))} ${mean(
      (a) => a.mae,
    )
      .toFixed(3)
      .padStart(6)}`,
  ];
}
