import { type AttributeSchema, type AttributeValues, parseValues } from "../data/attributes.js";
import type { Conversation } from "../data/template.js";

/**
 * The protocol for derived attributes. On SteerBench quality and helpfulness are functions of the other
 * attributes, so "quality k, the others at their defaults" asks for a contradiction (quality 0 with a
 * perfect, polite answer) that no training example ever showed. Requesting level k of a derived
 * attribute therefore sets the other attributes to the combination most often seen with k in the training
 * labels. When the others vary independently most combinations occur once, so ties go to the combination
 * whose values are individually most frequent at k (the largest sum of log frequencies). The choice is
 * always a combination some training turn really had, so it never contradicts the formulas. Base
 * attributes keep the usual sweep (the others at their defaults).
 */

/** For each derived attribute and level: the other attributes' settings that come with it. */
export type Companions = Record<string, Record<number, AttributeValues>>;

/** Companions of each level of each of `attributes`, from training labels; levels no turn has are left out. */
export function companionsFrom(
  labels: readonly AttributeValues[],
  schema: AttributeSchema,
  attributes: readonly string[],
): Companions {
  const out: Companions = {};
  for (const a of attributes) {
    const byLevel = new Map<number, AttributeValues[]>();
    for (const l of labels) {
      const k = l[a];
      if (k !== undefined) byLevel.set(k, [...(byLevel.get(k) ?? []), l]);
    }
    const levels: Record<number, AttributeValues> = {};
    for (const [k, rows] of [...byLevel].sort((x, y) => x[0] - y[0]))
      levels[k] = typicalCombination(rows, schema, a);
    out[a] = levels;
  }
  return out;
}

/** The most frequent combination of the attributes other than `skip` (ties: most typical values). */
function typicalCombination(
  rows: readonly AttributeValues[],
  schema: AttributeSchema,
  skip: string,
): AttributeValues {
  const others = schema.attributes.map((d) => d.name).filter((n) => n !== skip);
  const freq = new Map<string, number>(); // "name:value" → turns
  const combos = new Map<string, { values: AttributeValues; n: number }>();
  for (const r of rows) {
    const values: AttributeValues = {};
    for (const n of others)
      if (r[n] !== undefined) {
        values[n] = r[n]!;
        freq.set(`${n}:${r[n]}`, (freq.get(`${n}:${r[n]}`) ?? 0) + 1);
      }
    const key = JSON.stringify(values);
    const c = combos.get(key) ?? { values, n: 0 };
    c.n++;
    combos.set(key, c);
  }
  const typical = (v: AttributeValues) =>
    Object.entries(v).reduce((s, [n, x]) => s + Math.log(freq.get(`${n}:${x}`) ?? 1), 0);
  let best: { values: AttributeValues; n: number; t: number } | undefined;
  for (const c of combos.values()) {
    const t = typical(c.values);
    if (!best || c.n > best.n || (c.n === best.n && t > best.t)) best = { ...c, t };
  }
  return best?.values ?? {};
}

/** The settings to request for `attribute` at `level`: its companions (if it has them) and the level. */
export function requestFor(
  companions: Companions | undefined,
  attribute: string,
  level: number,
): AttributeValues {
  return { ...companions?.[attribute]?.[level], [attribute]: level };
}

/** The labels of every assistant turn of conversations (value strings parsed with `schema`). */
export function turnLabels(
  conversations: Iterable<Conversation>,
  schema: AttributeSchema,
): AttributeValues[] {
  const out: AttributeValues[] = [];
  for (const c of conversations)
    for (const t of c.turns) if (t.role === "assistant" && t.values) out.push(parseValues(schema, t.values));
  return out;
}
