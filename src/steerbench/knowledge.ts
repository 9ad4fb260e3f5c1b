/**
 * What SteerBench "knows": the unit-conversion factors, the fact table and the spelling words. Both the
 * generator (to pose questions) and the oracle (to re-derive answers from prompt text) read these tables;
 * the oracle never sees the generator's labels or its internal task objects.
 */

export interface UnitConversion {
  from: string;
  fromSingular: string;
  to: string;
  factor: number;
}

export const CONVERSIONS: readonly UnitConversion[] = [
  { from: "meters", fromSingular: "meter", to: "centimeters", factor: 100 },
  { from: "kilometers", fromSingular: "kilometer", to: "meters", factor: 1000 },
  { from: "hours", fromSingular: "hour", to: "minutes", factor: 60 },
  { from: "minutes", fromSingular: "minute", to: "seconds", factor: 60 },
  { from: "days", fromSingular: "day", to: "hours", factor: 24 },
  { from: "weeks", fromSingular: "week", to: "days", factor: 7 },
  { from: "feet", fromSingular: "foot", to: "inches", factor: 12 },
  { from: "yards", fromSingular: "yard", to: "feet", factor: 3 },
  { from: "kilograms", fromSingular: "kilogram", to: "grams", factor: 1000 },
  { from: "liters", fromSingular: "liter", to: "milliliters", factor: 1000 },
  { from: "years", fromSingular: "year", to: "months", factor: 12 },
  { from: "centimeters", fromSingular: "centimeter", to: "millimeters", factor: 10 },
];

export interface Fact {
  entity: string;
  /** "a" or "an" before the entity. */
  article: string;
  /** Plural property noun, e.g. "legs". */
  property: string;
  value: number;
}

/** Singular of each property noun, for "1 wheel". */
export const PROPERTY_SINGULAR: Readonly<Record<string, string>> = {
  legs: "leg",
  sides: "side",
  wheels: "wheel",
  strings: "string",
};

const facts = (property: string, rows: Array<[string, number]>): Fact[] =>
  rows.map(([entity, value]) => ({
    entity,
    // "a unicycle", "a ukulele": the /ju:/ sound takes "a".
    article: /^[aeio]/.test(entity) ? "an" : "a",
    property,
    value,
  }));

export const FACTS: readonly Fact[] = [
  ...facts("legs", [
    ["spider", 8],
    ["ant", 6],
    ["dog", 4],
    ["bird", 2],
    ["cat", 4],
    ["horse", 4],
    ["bee", 6],
    ["crab", 10],
    ["duck", 2],
    ["beetle", 6],
    ["cow", 4],
    ["frog", 4],
    ["chicken", 2],
    ["lobster", 10],
    ["sheep", 4],
    ["snake", 0],
  ]),
  ...facts("sides", [
    ["triangle", 3],
    ["square", 4],
    ["pentagon", 5],
    ["hexagon", 6],
    ["heptagon", 7],
    ["octagon", 8],
    ["nonagon", 9],
    ["decagon", 10],
    ["rectangle", 4],
    ["rhombus", 4],
  ]),
  ...facts("wheels", [
    ["bicycle", 2],
    ["tricycle", 3],
    ["car", 4],
    ["unicycle", 1],
    ["motorcycle", 2],
    ["wagon", 4],
    ["scooter", 2],
  ]),
  ...facts("strings", [
    ["guitar", 6],
    ["violin", 4],
    ["cello", 4],
    ["ukulele", 4],
    ["banjo", 5],
    ["harp", 47],
  ]),
];

/** Words to spell: common, lower-case ASCII, 5..9 letters. */
export const WORDS: readonly string[] = (
  "apple banana garden window pencil rabbit orange yellow purple silver castle dragon " +
  "elephant giraffe monkey turtle planet rocket island forest mountain river bridge candle " +
  "kitchen blanket pillow basket bottle button carpet cookie dinner doctor engine farmer " +
  "flower friend guitar hammer helmet jacket jungle kitten ladder lemon letter magnet marble " +
  "market mirror needle number ocean parrot peanut pepper picnic pirate pocket potato puzzle " +
  "rainbow saddle school shadow singer sister spider spring summer sunset teacher ticket " +
  "tomato travel tunnel umbrella valley violin wallet winter wizard zipper anchor balloon " +
  "cabbage chimney compass diamond feather harvest lantern library meadow octopus penguin " +
  "pumpkin quarter sandwich scarecrow skeleton squirrel thunder treasure trumpet village whistle"
).split(/\s+/);
