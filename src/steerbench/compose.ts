import { at } from "../util/at.js";
import type { Rng } from "../util/rng.js";
import {
  ANSWER_FRAMES,
  CONNECTIVES,
  CREATIVITY,
  HUMOR,
  helpfulnessOf,
  INCOHERENCE,
  NO_ANSWER,
  qualityOf,
  type SteerBenchValues,
  type StyleValues,
  TOXICITY,
} from "./style.js";
import { type Solution, type Task, unitFor } from "./tasks.js";

/** Seven attributes sampled uniformly and independently; helpfulness and quality follow from them. */
export function sampleValues(rng: Rng): SteerBenchValues {
  const v: StyleValues = {
    toxicity: rng.int(0, 4),
    humor: rng.int(0, 4),
    creativity: rng.int(0, 4),
    correctness: rng.int(0, 4),
    coherence: rng.int(0, 4),
    complexity: rng.int(0, 4),
    verbosity: rng.int(0, 4),
  };
  return withDerived(v);
}

/** The attributes SteerBench derives from the others (withDerived), not drawn on their own. */
export const DERIVED_ATTRIBUTES: readonly string[] = ["quality", "helpfulness"];

/** All nine attributes (canonical names) from the seven independent ones. */
export function withDerived(v: StyleValues): SteerBenchValues {
  const helpfulness = helpfulnessOf(v);
  return {
    quality: qualityOf(helpfulness, v),
    toxicity: v.toxicity,
    humor: v.humor,
    creativity: v.creativity,
    helpfulness,
    correctness: v.correctness,
    coherence: v.coherence,
    complexity: v.complexity,
    verbosity: v.verbosity,
  };
}

/**
 * The response, in a fixed layout a small model can learn:
 *   [rudeness] answer-sentence [explanation steps...] [incoherence] [imagery] [joke]
 */
export function composeResponse(task: Task, v: StyleValues, rng: Rng): string {
  const out: string[] = [];
  if (v.toxicity > 0) out.push(rng.pick(at(TOXICITY, v.toxicity, "toxicity bank")));
  const frame = at(ANSWER_FRAMES, v.complexity, "answer frames");
  out.push(frame.replace("{A}", realiseAnswer(task.solution, v.correctness, rng)));
  const connectives = at(CONNECTIVES, v.complexity, "connectives");
  for (let i = 0; i < v.verbosity; i++) {
    const connective = at(connectives, i, "connectives");
    const step = at(task.steps, i, "explanation steps");
    out.push(connective ? `${connective} ${step}.` : `${step.charAt(0).toUpperCase()}${step.slice(1)}.`);
  }
  if (v.coherence < 4) out.push(rng.pick(at(INCOHERENCE, v.coherence, "incoherence bank")));
  if (v.creativity > 0) out.push(rng.pick(at(CREATIVITY, v.creativity, "creativity bank")));
  if (v.humor > 0) out.push(rng.pick(at(HUMOR, v.humor, "humor bank")));
  return out.join(" ");
}

/** The answer text at a correctness level (see gradeAnswer in solve.ts for the inverse). */
export function realiseAnswer(s: Solution, level: number, rng: Rng): string {
  if (level === 0) return NO_ANSWER;
  switch (s.kind) {
    case "number": {
      const d = level === 4 ? 0 : level === 3 ? 1 : level === 2 ? rng.int(2, 9) : rng.int(10, 49);
      const stated = s.value - d >= 0 && rng.chance(0.5) ? s.value - d : s.value + d;
      return s.unit ? `${stated} ${unitFor(s.unit, stated)}` : String(stated);
    }
    case "choice": {
      const ranked = [...s.options].sort((a, b) => (s.want === "max" ? b - a : a - b));
      return String(ranked[Math.min(4 - level, ranked.length - 1)]);
    }
    case "sort": {
      const sorted = [...s.items].sort((a, b) => (s.order === "asc" ? a - b : b - a));
      const n = sorted.length;
      if (level === 1) sorted.reverse(); // the wrong direction: many inversions
      if (level === 3) swap(sorted, rng.int(0, n - 2));
      if (level === 2) {
        // Two non-overlapping adjacent swaps: exactly two inversions.
        const i = rng.int(0, n - 4);
        swap(sorted, i);
        swap(sorted, rng.int(i + 2, n - 2));
      }
      return sorted.join(", ");
    }
    case "spell": {
      const letters = s.word.split("");
      const positions = rng.distinct(4 - level, 0, letters.length - 1);
      for (const p of positions) {
        const old = at(letters, p, "spelled word");
        let c = old;
        while (c === old) c = String.fromCharCode(97 + rng.int(0, 25));
        letters[p] = c;
      }
      return letters.join("-");
    }
  }
}

function swap(xs: number[], i: number): void {
  const a = at(xs, i, "swap");
  xs[i] = at(xs, i + 1, "swap");
  xs[i + 1] = a;
}
