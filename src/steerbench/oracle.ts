import type { AttributeValues } from "../data/attributes.js";
import { withDerived } from "./compose.js";
import { gradeAnswer, parsePrompt } from "./solve.js";
import { ANSWER_FRAMES, CONNECTIVES, CREATIVITY, HUMOR, INCOHERENCE, TOXICITY } from "./style.js";

/**
 * The SteerBench oracle: all nine attributes of a response measured from its text (and the prompt, for
 * correctness) alone. Deterministic, total: any string in, nine integers 0..4 out.
 *
 * 1. Marker sentences of each bank are found by substring search (lower-cased) and cut out; a left-over
 *    sentence that opens with a marker's first three words counts as that marker too. Then
 *    toxicity/humor/creativity = the highest level found (0 if none), coherence = the lowest level of
 *    disruption found (4 if none).
 * 2. What is left is split into sentences. The first sentence that opens with an answer frame gives
 *    complexity (the frame's tier) and the answer, graded against the prompt's re-derived solution
 *    (correctness 0 when there is no answer; 2 when the prompt is not one the oracle can solve).
 * 3. Every other sentence of two or more words counts as explanation: verbosity = min(4, count).
 *    Without an answer frame, complexity comes from the explanation connectives (0 if none).
 * 4. helpfulness and quality follow from the others by the documented formulas (style.ts).
 */

/** Longer texts are scored on their first MAX_CHARS characters: bounded time on any input. */
export const MAX_CHARS = 20_000;

interface Marker {
  text: string;
  level: number;
}

// Matched without their final punctuation, so "Easy peasy" still counts where a model drops the period.
const markers = (bank: Readonly<Record<number, readonly string[]>>): Marker[] =>
  Object.entries(bank)
    .flatMap(([level, texts]) =>
      texts.map((t) => ({ text: t.toLowerCase().replace(/[.!?]+$/, ""), level: Number(level) })),
    )
    .sort((a, b) => b.text.length - a.text.length);

const BANKS = {
  toxicity: markers(TOXICITY),
  humor: markers(HUMOR),
  creativity: markers(CREATIVITY),
  coherence: markers(INCOHERENCE),
};

type BankName = keyof typeof BANKS;

/**
 * The first three words of each longer marker: a sentence that opens like a marker but then goes astray
 * (as a model's imitation might) still counts for that marker's level. Heads are unique (tests check).
 */
export const MARKER_HEADS: ReadonlyMap<string, { bank: BankName; level: number }> = new Map(
  (Object.keys(BANKS) as BankName[]).flatMap((bank) =>
    BANKS[bank]
      .filter((m) => m.text.split(" ").length > 3)
      .map((m) => [headOf(m.text), { bank, level: m.level }] as const),
  ),
);

function headOf(sentence: string): string {
  return sentence.split(" ", 3).join(" ");
}

const FRAME_PREFIXES = ANSWER_FRAMES.map((f) => f.slice(0, f.indexOf("{A}")).toLowerCase());
const CONNECTIVE_TIERS = CONNECTIVES.map((tier) => tier.filter((c) => c !== "").map((c) => c.toLowerCase()));

/** Finds and cuts out a bank's markers; returns the levels found and the text without them. */
function cutMarkers(text: string, bank: Marker[]): { levels: number[]; rest: string } {
  const levels: number[] = [];
  let rest = text;
  for (const m of bank) {
    if (rest.includes(m.text)) {
      levels.push(m.level);
      rest = rest.split(m.text).join(" ");
    }
  }
  return { levels, rest };
}

export function scoreResponse(prompt: string, response: string): AttributeValues {
  let text = String(response ?? "")
    .slice(0, MAX_CHARS)
    .toLowerCase()
    .replace(/\s+/g, " ");

  const found: Record<keyof typeof BANKS, number[]> = {
    toxicity: [],
    humor: [],
    creativity: [],
    coherence: [],
  };
  for (const key of Object.keys(BANKS) as Array<keyof typeof BANKS>) {
    const cut = cutMarkers(text, BANKS[key]);
    found[key] = cut.levels;
    text = cut.rest;
  }

  let complexity: number | undefined;
  let answer: string | undefined;
  let explanations = 0;
  const connectiveHits = CONNECTIVE_TIERS.map(() => 0);
  for (const raw of text.split(/(?<=[.!?])\s+/)) {
    const sentence = raw.trim();
    if (sentence === "") continue;
    const head = MARKER_HEADS.get(headOf(sentence));
    if (head) {
      found[head.bank].push(head.level);
      continue;
    }
    const tier = answer === undefined ? frameTier(sentence) : -1;
    if (tier >= 0) {
      complexity = tier;
      answer = sentence.slice(FRAME_PREFIXES[tier].length).replace(/[.!?\s]+$/, "");
      continue;
    }
    if (sentence.split(" ").filter((w) => /[\p{L}\p{N}]/u.test(w)).length >= 2) {
      explanations++;
      CONNECTIVE_TIERS.forEach((tierConnectives, t) => {
        if (tierConnectives.some((c) => sentence.startsWith(`${c} `))) connectiveHits[t]++;
      });
    }
  }
  if (complexity === undefined) {
    const best = Math.max(...connectiveHits);
    complexity = best > 0 ? connectiveHits.indexOf(best) : 0;
  }

  let correctness = 0;
  if (answer !== undefined) {
    const solution = parsePrompt(String(prompt ?? ""));
    correctness = solution ? gradeAnswer(solution, answer) : 2;
  }

  return withDerived({
    toxicity: maxOr(found.toxicity, 0),
    humor: maxOr(found.humor, 0),
    creativity: maxOr(found.creativity, 0),
    coherence: found.coherence.length ? Math.min(...found.coherence) : 4,
    correctness,
    complexity,
    verbosity: Math.min(4, explanations),
  });
}

/** The complexity tier of an answer sentence, or -1; longest frame first so none shadows another. */
function frameTier(sentence: string): number {
  for (let t = FRAME_PREFIXES.length - 1; t >= 0; t--) {
    if (sentence.startsWith(FRAME_PREFIXES[t])) return t;
  }
  return -1;
}

const maxOr = (xs: number[], fallback: number): number => (xs.length ? Math.max(...xs) : fallback);
