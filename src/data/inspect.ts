import type { DataRecord } from "./record.js";

/** Counts and per-attribute histograms of a record stream (`steerlm data inspect`). */
export interface Inspection {
  records: number;
  /** Number of turns -> records with that many turns. */
  turns: Record<number, number>;
  assistantTurns: number;
  labelledTurns: number;
  /** Mean length of assistant responses, in characters (UTF-16 units). */
  meanResponseChars: number;
  /** Attribute -> value -> count, over labelled assistant turns; `missing` counts labelled turns without it. */
  attributes: Record<string, { values: Record<number, number>; missing: number }>;
  /** Records that belong to preference pairs (HelpSteer2 preference rows). */
  preferenceRecords: number;
}

export async function inspectRecords(records: AsyncIterable<DataRecord>): Promise<Inspection> {
  const out: Inspection = {
    records: 0,
    turns: {},
    assistantTurns: 0,
    labelledTurns: 0,
    meanResponseChars: 0,
    attributes: {},
    preferenceRecords: 0,
  };
  let responseChars = 0;
  for await (const r of records) {
    out.records++;
    out.turns[r.turns.length] = (out.turns[r.turns.length] ?? 0) + 1;
    if (r.preference) out.preferenceRecords++;
    for (const t of r.turns) {
      if (t.role !== "assistant") continue;
      out.assistantTurns++;
      responseChars += t.text.length;
      if (!t.labels) continue;
      out.labelledTurns++;
      for (const [k, v] of Object.entries(t.labels)) {
        if (!out.attributes[k]) out.attributes[k] = { values: {}, missing: 0 };
        const a = out.attributes[k];
        a.values[v] = (a.values[v] ?? 0) + 1;
      }
    }
  }
  for (const a of Object.values(out.attributes)) {
    const present = Object.values(a.values).reduce((x, y) => x + y, 0);
    a.missing = out.labelledTurns - present;
  }
  out.meanResponseChars = out.assistantTurns > 0 ? responseChars / out.assistantTurns : 0;
  return out;
}

/** A plain-text report: counts, then one histogram line per attribute. */
export function formatInspection(ins: Inspection, order: readonly string[] = []): string {
  const lines = [
    `records: ${ins.records}`,
    `turns per record: ${Object.entries(ins.turns)
      .map(([n, c]) => `${n}: ${c}`)
      .join(", ")}`,
    `assistant turns: ${ins.assistantTurns} (${ins.labelledTurns} labelled), mean response ${ins.meanResponseChars.toFixed(0)} chars`,
  ];
  if (ins.preferenceRecords > 0) lines.push(`preference records: ${ins.preferenceRecords}`);
  const names = [
    ...order.filter((k) => ins.attributes[k]),
    ...Object.keys(ins.attributes).filter((k) => !order.includes(k)),
  ];
  if (names.length > 0) lines.push("attribute histograms (value: count):");
  const width = Math.max(0, ...names.map((n) => n.length));
  for (const name of names) {
    const a = ins.attributes[name];
    if (a === undefined) continue;
    const hist = Object.entries(a.values)
      .sort(([x], [y]) => Number(x) - Number(y))
      .map(([v, c]) => `${v}: ${c}`)
      .join("  ");
    lines.push(`  ${name.padEnd(width)}  ${hist}${a.missing > 0 ? `  (missing: ${a.missing})` : ""}`);
  }
  return lines.join("\n");
}
