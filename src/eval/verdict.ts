/**
 * Verdicts out of judge text, by FastChat's rules (fastchat/llm_judge/common.py, fastchat/eval/
 * eval_gpt_review.py). A judgment with no verdict is an error result, never a dropped row: FastChat records
 * it as score -1 / winner "error" / score [-1, -1], and so do we, with the reason beside it.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

// `[[8]]`, `[[8.5]]`; FastChat falls back to a single-bracket `[8]` when no double-bracket rating exists.
const ONE_SCORE = /\[\[(\d+\.?\d*)\]\]/;
const ONE_SCORE_BACKUP = /\[(\d+\.?\d*)\]/;
const TWO_SCORE = /\[\[(\d+\.?\d*),\s?(\d+\.?\d*)\]\]/;
const TWO_SCORE_BACKUP = /\[(\d+\.?\d*),\s?(\d+\.?\d*)\]/;

/** Two ratings closer than this are a tie (FastChat's TIE_DELTA). */
export const TIE_DELTA = 0.1;

/** `[[rating]]` judges (single-v1 ...): the first `[[n]]`, else the first `[n]`. */
export function parseRating(judgment: string): Parsed<number> {
  const m = ONE_SCORE.exec(judgment) ?? ONE_SCORE_BACKUP.exec(judgment);
  if (!m) return { ok: false, error: "no [[rating]] in the judgment" };
  return { ok: true, value: Number(m[1]) };
}

export type GameWinner = "A" | "B" | "tie";

/**
 * `[[A]]` judges (pair-v2 ...): FastChat tests the markers in the order A, B, C, so a judgment that
 * mentions `[[A]]` anywhere counts for A even if it later writes `[[B]]`.
 */
export function parsePairVerdict(judgment: string): Parsed<GameWinner> {
  if (judgment.includes("[[A]]")) return { ok: true, value: "A" };
  if (judgment.includes("[[B]]")) return { ok: true, value: "B" };
  if (judgment.includes("[[C]]")) return { ok: true, value: "tie" };
  return { ok: false, error: "no [[A]], [[B]] or [[C]] in the judgment" };
}

/** `[[rating_a,rating_b]]` judges: the higher rating wins, a tie within TIE_DELTA. */
export function parseTwoRatings(judgment: string): Parsed<GameWinner> {
  const m = TWO_SCORE.exec(judgment) ?? TWO_SCORE_BACKUP.exec(judgment);
  if (!m) return { ok: false, error: "no [[rating_a,rating_b]] in the judgment" };
  const a = Number(m[1]);
  const b = Number(m[2]);
  return { ok: true, value: Math.abs(a - b) <= TIE_DELTA ? "tie" : a > b ? "A" : "B" };
}

/** The game verdict for a pairwise judge prompt's output format. */
export function parseGame(outputFormat: string, judgment: string): Parsed<GameWinner> {
  if (outputFormat === "[[A]]") return parsePairVerdict(judgment);
  if (outputFormat === "[[rating_a,rating_b]]") return parseTwoRatings(judgment);
  return { ok: false, error: `unsupported output_format ${JSON.stringify(outputFormat)}` };
}

// Python's float() on a decimal literal (surrounding whitespace allowed). nan/inf are refused: a total
// score cannot use them.
const PY_FLOAT = /^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

/**
 * The legacy review's scores: its first line, commas read as spaces, split on single spaces, exactly two
 * parts ("9 8.5", "9, 8.5"; "9  8" is three parts and fails, as in FastChat's parse_score).
 */
export function parseLegacyScores(review: string): Parsed<[number, number]> {
  const first = (review.split("\n")[0] as string).replaceAll(",", " ");
  const parts = first.split(" ");
  if (parts.length !== 2)
    return { ok: false, error: `the first line is not two scores: ${JSON.stringify(first.slice(0, 60))}` };
  const [a, b] = parts as [string, string];
  if (!PY_FLOAT.test(a) || !PY_FLOAT.test(b))
    return { ok: false, error: `the first line is not two numbers: ${JSON.stringify(first.slice(0, 60))}` };
  return { ok: true, value: [Number(a), Number(b)] };
}
