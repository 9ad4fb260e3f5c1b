import type { Rng } from "../util/rng.js";
import { CONVERSIONS, FACTS, PROPERTY_SINGULAR, WORDS } from "./knowledge.js";

/**
 * Task families with checkable answers. Each generated task carries its prompt, its solution and four
 * explanation steps (verbosity k uses the first k). Prompts come from a few phrasings per family so the
 * oracle can parse them back (see solve.ts) while a model still sees some variety.
 */
export const FAMILIES = ["arithmetic", "conversion", "comparison", "sorting", "spelling", "facts"] as const;
export type Family = (typeof FAMILIES)[number];

/** What a correct answer is; the oracle re-derives the same object from the prompt text. */
export type Solution =
  | { kind: "number"; value: number /** unit noun after the number (plural), if any */; unit?: string }
  | { kind: "choice"; options: number[]; want: "max" | "min" }
  | { kind: "sort"; items: number[]; order: "asc" | "desc" }
  | { kind: "spell"; word: string };

export interface Task {
  family: Family;
  prompt: string;
  solution: Solution;
  /** Explanation sentences without the final period, lower-case first letter; always four. */
  steps: string[];
}

const OPS = [
  { word: "plus", apply: (a: number, b: number) => a + b },
  { word: "minus", apply: (a: number, b: number) => a - b },
  { word: "times", apply: (a: number, b: number) => a * b },
] as const;

function arithmetic(rng: Rng): Task {
  const op = rng.pick(OPS);
  let a: number;
  let b: number;
  if (op.word === "times") {
    a = rng.int(2, 12);
    b = rng.int(2, 12);
  } else {
    // Small operands keep the task within reach of a few-million-parameter model.
    a = rng.int(1, 50);
    b = rng.int(1, 50);
    if (op.word === "minus" && b > a) [a, b] = [b, a]; // answers stay non-negative
  }
  const e = `${a} ${op.word} ${b}`;
  const prompt = rng.pick([
    `What is ${e}?`,
    `Compute ${e}.`,
    `Can you work out ${e}?`,
    `Please calculate ${e}.`,
  ]);
  const steps =
    op.word === "plus"
      ? [
          `we start with ${a}`,
          `we add ${b} to that number`,
          "we carry a ten when a column gets too big",
          `we check by taking ${b} back away`,
        ]
      : op.word === "minus"
        ? [
            `we start with ${a}`,
            `we take ${b} away from that number`,
            "we borrow a ten when a column is too small",
            `we check by adding ${b} back on`,
          ]
        : [
            `we start with ${a}`,
            `we make ${b} equal groups of that number`,
            "we add all the groups together",
            `we check by splitting the total into ${b} groups`,
          ];
  return { family: "arithmetic", prompt, solution: { kind: "number", value: op.apply(a, b) }, steps };
}

function conversion(rng: Rng): Task {
  const c = rng.pick(CONVERSIONS);
  const v = rng.int(2, 20);
  const prompt = rng.pick([
    `How many ${c.to} are in ${v} ${c.from}?`,
    `Convert ${v} ${c.from} to ${c.to}.`,
    `What is ${v} ${c.from} in ${c.to}?`,
  ]);
  return {
    family: "conversion",
    prompt,
    solution: { kind: "number", value: v * c.factor, unit: c.to },
    steps: [
      `one ${c.fromSingular} equals ${c.factor} ${c.to}`,
      `we have ${v} ${c.from} to convert`,
      `we multiply ${v} by ${c.factor}`,
      `we keep the result in ${c.to}`,
    ],
  };
}

const listText = (xs: number[], and: boolean): string =>
  and ? `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}` : xs.join(", ");

function comparison(rng: Rng): Task {
  const options = rng.distinct(4, 1, 99);
  const want = rng.chance(0.5) ? "max" : "min";
  const adj = want === "max" ? rng.pick(["largest", "biggest"]) : rng.pick(["smallest", "lowest"]);
  const prompt = rng.pick([
    `Which is the ${adj} of ${listText(options, true)}?`,
    `Find the ${adj} number: ${listText(options, false)}.`,
    `Out of ${listText(options, true)}, which one is ${adj}?`,
  ]);
  return {
    family: "comparison",
    prompt,
    solution: { kind: "choice", options, want },
    steps: [
      "we look at each number in turn",
      "we compare the numbers two at a time",
      `we keep the ${want === "max" ? "largest" : "smallest"} one seen so far`,
      "we stop after the last number",
    ],
  };
}

function sorting(rng: Rng): Task {
  const items = rng.distinct(rng.int(4, 5), 1, 99);
  const order = rng.chance(0.5) ? "asc" : "desc";
  const list = listText(items, false);
  const prompt =
    order === "asc"
      ? rng.pick([
          `Sort these numbers from smallest to largest: ${list}.`,
          `Put ${list} in ascending order.`,
          `Order the numbers ${list} from lowest to highest.`,
        ])
      : rng.pick([
          `Sort these numbers from largest to smallest: ${list}.`,
          `Put ${list} in descending order.`,
          `Order the numbers ${list} from highest to lowest.`,
        ]);
  return {
    family: "sorting",
    prompt,
    solution: { kind: "sort", items, order },
    steps: [
      `we find the ${order === "asc" ? "smallest" : "largest"} number first`,
      "we place it at the front of the list",
      "we repeat this with the numbers left over",
      "we stop when every number has a place",
    ],
  };
}

function spelling(rng: Rng): Task {
  const w = rng.pick(WORDS);
  const prompt = rng.pick([
    `How do you spell "${w}"?`,
    `Spell the word "${w}" letter by letter.`,
    `Please spell out "${w}".`,
  ]);
  return {
    family: "spelling",
    prompt,
    solution: { kind: "spell", word: w },
    steps: [
      `the word ${w} has ${w.length} letters`,
      `the first letter is ${w[0]}`,
      `the last letter is ${w[w.length - 1]}`,
      "we write each letter in order with dashes",
    ],
  };
}

function facts(rng: Rng): Task {
  const f = rng.pick(FACTS);
  const cap = f.article.charAt(0).toUpperCase() + f.article.slice(1);
  const prompt = rng.pick([
    `How many ${f.property} does ${f.article} ${f.entity} have?`,
    `${cap} ${f.entity} has how many ${f.property}?`,
    `Tell me how many ${f.property} ${f.article} ${f.entity} has.`,
  ]);
  return {
    family: "facts",
    prompt,
    solution: { kind: "number", value: f.value, unit: f.property },
    steps: [
      `this is a well known fact about the ${f.entity}`,
      `we count the ${f.property} one by one`,
      `every ${f.entity} has the same number of ${f.property}`,
      "any picture book shows this too",
    ],
  };
}

const GENERATORS: Record<Family, (rng: Rng) => Task> = {
  arithmetic,
  conversion,
  comparison,
  sorting,
  spelling,
  facts,
};

export function generateTask(family: Family, rng: Rng): Task {
  return GENERATORS[family](rng);
}

/** Plural unit nouns that have an irregular singular besides the fact properties. */
const UNIT_SINGULAR: Readonly<Record<string, string>> = {
  ...PROPERTY_SINGULAR,
  feet: "foot",
  inches: "inch",
  ...Object.fromEntries(CONVERSIONS.map((c) => [c.from, c.fromSingular])),
};

export function unitFor(unit: string, n: number): string {
  if (n !== 1) return unit;
  return UNIT_SINGULAR[unit] ?? unit.replace(/s$/, "");
}
