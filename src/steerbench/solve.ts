import { editDistance } from "../util/edit-distance.js";
import { CONVERSIONS, FACTS } from "./knowledge.js";
import type { Solution } from "./tasks.js";

/**
 * The oracle's half of correctness: re-derive the solution from the prompt text alone, then grade a
 * stated answer against it. Knows only the phrasings' key words, not the generator's internals, so it
 * also accepts reasonable paraphrases ("What is 3 + 4?" parses as arithmetic).
 */

const ints = (text: string): number[] =>
  (text.match(/-?\d+/g) ?? []).map(Number).filter(Number.isSafeInteger);

export function parsePrompt(rawPrompt: string): Solution | undefined {
  const prompt = rawPrompt.slice(0, 2000).toLowerCase();

  const quoted = prompt.match(/spell[^"]*"([a-z]+)"/) ?? prompt.match(/"([a-z]+)"[^"]*spell/);
  if (quoted?.[1]) return { kind: "spell", word: quoted[1] };

  if (/\b(sort|order)\b/.test(prompt)) {
    const items = ints(prompt);
    if (items.length >= 2) {
      const desc = /largest to smallest|highest to lowest|descending|decreasing/.test(prompt);
      const asc = /smallest to largest|lowest to highest|ascending|increasing/.test(prompt);
      if (desc || asc) return { kind: "sort", items, order: desc ? "desc" : "asc" };
    }
  }

  const extreme = prompt.match(/\b(largest|biggest|greatest|smallest|lowest|least)\b/);
  if (extreme) {
    const options = ints(prompt);
    if (options.length >= 2) {
      const want = /largest|biggest|greatest/.test(extreme[0]) ? "max" : "min";
      return { kind: "choice", options, want };
    }
  }

  for (const c of CONVERSIONS) {
    const source = prompt.match(new RegExp(`(\\d+) ${c.from}\\b`));
    if (source && new RegExp(`\\b${c.to}\\b`).test(prompt.replace(source[0], ""))) {
      return { kind: "number", value: Number(source[1]) * c.factor, unit: c.to };
    }
  }

  for (const f of FACTS) {
    if (new RegExp(`\\b${f.property}\\b`).test(prompt) && new RegExp(`\\b${f.entity}\\b`).test(prompt)) {
      return { kind: "number", value: f.value, unit: f.property };
    }
  }

  const [, left, operator = "", right] =
    prompt.match(/(-?\d+)\s*(plus|minus|times|\+|-|\*|x|×)\s*(-?\d+)/) ?? [];
  if (left !== undefined) {
    const a = Number(left);
    const b = Number(right);
    const value = /plus|\+/.test(operator) ? a + b : /minus|-/.test(operator) ? a - b : a * b;
    if (Number.isSafeInteger(value)) return { kind: "number", value };
  }
  return undefined;
}

/**
 * Correctness 0..4 of the answer text (what follows the answer frame) against the solution:
 * 4 exact; 3 slightly off; 2 off; 1 far off / not a candidate at all; 0 no answer of the right form.
 * - number: |stated - true| = 0, 1, 2..9, >= 10.
 * - choice: rank of the stated option (best, second, third, worse or not an option).
 * - sort: inversions of the stated permutation (0, 1, 2, >= 3 or not a permutation of the items).
 * - spell: wrong letters (Hamming distance, or edit distance if the length differs): 0, 1, 2, >= 3.
 */
export function gradeAnswer(solution: Solution, answer: string): number {
  const text = answer.toLowerCase();
  switch (solution.kind) {
    case "number": {
      const stated = ints(text)[0];
      if (stated === undefined) return 0;
      return byDistance(Math.abs(stated - solution.value), 9);
    }
    case "choice": {
      const stated = ints(text)[0];
      if (stated === undefined) return 0;
      if (!solution.options.includes(stated)) return 1;
      const sign = solution.want === "max" ? 1 : -1;
      const better = solution.options.filter((o) => sign * o > sign * stated).length;
      return Math.max(1, 4 - better);
    }
    case "sort": {
      const stated = ints(text);
      if (stated.length < 2) return 0;
      if (!samePermutation(stated, solution.items)) return 1;
      let inversions = 0;
      for (const [i, x] of stated.entries()) {
        for (const y of stated.slice(i + 1)) {
          if (solution.order === "asc" ? x > y : x < y) inversions++;
        }
      }
      return Math.max(1, 4 - inversions);
    }
    case "spell": {
      const m = text.match(/\b[a-z](?:-[a-z])+\b/);
      if (!m) return 0;
      const stated = m[0].replace(/-/g, "");
      const want = solution.word;
      const d =
        stated.length === want.length
          ? hamming(stated, want)
          : editDistance(stated.split(""), want.split(""));
      return Math.max(1, 4 - d);
    }
  }
}

/** 0 -> 4, 1 -> 3, 2..wide -> 2, more -> 1. */
function byDistance(d: number, wide: number): number {
  if (d === 0) return 4;
  if (d === 1) return 3;
  if (d <= wide) return 2;
  return 1;
}

function samePermutation(a: number[], b: number[]): boolean {
  if (a.length !== b.length) return false;
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  return x.every((v, i) => v === y[i]);
}

function hamming(a: string, b: string): number {
  let d = 0;
  for (const [i, c] of a.split("").entries()) if (c !== b[i]) d++;
  return d;
}
