import { editDistance } from "../util/edit-distance.js";
import { CREATIVITY, HUMOR, INCOHERENCE, TOXICITY } from "./style.js";

/**
 * Finding style markers in (lower-cased) text, from strict to forgiving:
 * 1. exact substring, without the marker's final punctuation ("easy peasy" still counts);
 * 2. a left-over sentence that opens with the first three words of a longer marker;
 * 3. a left-over sentence within a word-level edit distance of a quarter of a marker sentence's words
 *    (one word in four replaced, dropped or added), for marker sentences of four words or more.
 * The steps 2-3 exist for model outputs that imitate a marker imperfectly; on generated text step 1
 * finds everything (the tests check that no explanation step or answer triggers 2 or 3).
 */

export type BankName = "toxicity" | "humor" | "creativity" | "coherence";

interface Marker {
  text: string;
  level: number;
}

const markers = (bank: Readonly<Record<number, readonly string[]>>): Marker[] =>
  Object.entries(bank)
    .flatMap(([level, texts]) =>
      texts.map((t) => ({ text: t.toLowerCase().replace(/[.!?]+$/, ""), level: Number(level) })),
    )
    .sort((a, b) => b.text.length - a.text.length);

const BANKS: Record<BankName, Marker[]> = {
  toxicity: markers(TOXICITY),
  humor: markers(HUMOR),
  creativity: markers(CREATIVITY),
  coherence: markers(INCOHERENCE),
};
const BANK_NAMES = Object.keys(BANKS) as BankName[];

export interface MarkerHit {
  bank: BankName;
  level: number;
}

/** Cuts every exact marker out of `text`; returns what was found and the rest. */
export function cutMarkers(text: string): { hits: MarkerHit[]; rest: string } {
  const hits: MarkerHit[] = [];
  let rest = text;
  for (const bank of BANK_NAMES) {
    for (const m of BANKS[bank]) {
      if (rest.includes(m.text)) {
        hits.push({ bank, level: m.level });
        rest = rest.split(m.text).join(" ");
      }
    }
  }
  return { hits, rest };
}

/** Words without surrounding punctuation ("seven?" -> "seven"; "*sigh*" keeps its stars). */
export function wordsOf(sentence: string): string[] {
  return sentence
    .split(" ")
    .map((w) => w.replace(/^[^\p{L}\p{N}*]+|[^\p{L}\p{N}*]+$/gu, ""))
    .filter((w) => w !== "");
}

function headOf(words: string[]): string {
  return words.slice(0, 3).join(" ");
}

/** Marker sentences (jokes have two) of four words or more, as words. */
const PIECES: Array<MarkerHit & { words: string[] }> = BANK_NAMES.flatMap((bank) =>
  BANKS[bank].flatMap((m) =>
    m.text
      .split(/(?<=[.!?])\s+/)
      .map((piece) => ({ bank, level: m.level, words: wordsOf(piece) }))
      .filter((p) => p.words.length >= 4),
  ),
);

/** Heads of the longer markers (unique; the tests check). */
export const MARKER_HEADS: ReadonlyMap<string, MarkerHit> = new Map(
  BANK_NAMES.flatMap((bank) =>
    BANKS[bank]
      .filter((m) => wordsOf(m.text).length > 3)
      .map((m) => [headOf(wordsOf(m.text)), { bank, level: m.level }] as const),
  ),
);

/** A left-over sentence that is an imperfect marker (steps 2-3 above), or undefined. */
export function fuzzyMarker(sentence: string): MarkerHit | undefined {
  const words = wordsOf(sentence);
  if (words.length < 3) return undefined;
  const head = MARKER_HEADS.get(headOf(words));
  if (head) return head;
  for (const p of PIECES) {
    const budget = Math.floor(p.words.length / 4);
    if (Math.abs(p.words.length - words.length) > budget) continue;
    if (editDistance(p.words, words, budget) <= budget) return { bank: p.bank, level: p.level };
  }
  return undefined;
}
