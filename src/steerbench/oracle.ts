import { editDistance } from "../util/edit-distance.js";
import { withDerived } from "./compose.js";
import { type BankName, cutMarkers, fuzzyMarker, wordsOf } from "./markers.js";
import { gradeAnswer, parsePrompt } from "./solve.js";
import { ANSWER_FRAMES, CONNECTIVES, type SteerBenchValues } from "./style.js";

/**
 * The SteerBench oracle: all nine attributes of a response measured from its text (and the prompt, for
 * correctness) alone. Deterministic, total: any string in, nine integers 0..4 out.
 *
 * 1. Style markers are found and cut out (markers.ts: exact, then imperfect imitations sentence by
 *    sentence): toxicity/humor/creativity = the highest level found (0 if none), coherence = the lowest
 *    level of disruption found (4 if none).
 * 2. What is left is split into sentences. The first sentence that opens with an answer frame (the
 *    longer frames may have one word wrong) gives complexity (the frame's tier) and the answer, graded
 *    against the prompt's re-derived solution (correctness 0 when there is no answer; 2 when the prompt
 *    is not one the oracle can solve).
 * 3. Every other sentence of two or more words counts as explanation: verbosity = min(4, count).
 *    Without an answer frame, complexity comes from the explanation connectives (0 if none).
 * 4. helpfulness and quality follow from the others by the documented formulas (style.ts).
 */

/** Longer texts are scored on their first MAX_CHARS characters: bounded time on any input. */
export const MAX_CHARS = 20_000;

const FRAME_PREFIXES = ANSWER_FRAMES.map((f) => f.slice(0, f.indexOf("{A}")).toLowerCase());
const FRAME_WORDS = FRAME_PREFIXES.map((p) => wordsOf(p));
const CONNECTIVE_TIERS = CONNECTIVES.map((tier) => tier.filter((c) => c !== "").map((c) => c.toLowerCase()));

export function scoreResponse(prompt: string, response: string): SteerBenchValues {
  const cut = cutMarkers(
    String(response ?? "")
      .slice(0, MAX_CHARS)
      .toLowerCase()
      .replace(/\s+/g, " "),
  );
  const found: Record<BankName, number[]> = { toxicity: [], humor: [], creativity: [], coherence: [] };
  for (const hit of cut.hits) found[hit.bank].push(hit.level);

  let complexity: number | undefined;
  let answer: string | undefined;
  let explanations = 0;
  const connectiveHits = CONNECTIVE_TIERS.map(() => 0);
  for (const raw of cut.rest.split(/(?<=[.!?])\s+/)) {
    const sentence = raw.trim();
    if (sentence === "") continue;
    if (answer === undefined) {
      const frame = findFrame(sentence);
      if (frame) {
        complexity = frame.tier;
        answer = frame.answer;
        continue;
      }
    }
    const hit = fuzzyMarker(sentence);
    if (hit) {
      found[hit.bank].push(hit.level);
      continue;
    }
    if (sentence.split(" ").filter((w) => /[\p{L}\p{N}]/u.test(w)).length >= 2) {
      explanations++;
      CONNECTIVE_TIERS.forEach((tierConnectives, t) => {
        if (tierConnectives.some((c) => sentence.startsWith(`${c} `)))
          connectiveHits[t] = (connectiveHits[t] ?? 0) + 1;
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

/**
 * The answer frame a sentence opens with: its tier and the answer text after it. Exact prefixes first
 * (longest first, so none shadows another); then frames of four words or more with one word wrong.
 */
function findFrame(sentence: string): { tier: number; answer: string } | undefined {
  const strip = (s: string) => s.replace(/[.!?\s]+$/, "");
  for (const [t, prefix] of [...FRAME_PREFIXES.entries()].reverse()) {
    if (sentence.startsWith(prefix)) return { tier: t, answer: strip(sentence.slice(prefix.length)) };
  }
  const raw = sentence.split(" ");
  for (const [t, frame] of [...FRAME_WORDS.entries()].reverse()) {
    if (frame.length < 4 || raw.length <= frame.length) continue;
    if (editDistance(frame, wordsOf(raw.slice(0, frame.length).join(" ")), 1) <= 1) {
      return { tier: t, answer: strip(raw.slice(frame.length).join(" ")) };
    }
  }
  return undefined;
}

const maxOr = (xs: number[], fallback: number): number => (xs.length ? Math.max(...xs) : fallback);
