/**
 * How each style attribute is realised in text. Every level of every attribute has its own small bank
 * of fixed sentences (markers), so a small model can learn "value -> marker" and the oracle can find the
 * marker again by plain substring search. Banks never share a sentence, and no explanation step contains
 * one (the tests check both).
 */

type Bank = Readonly<Record<number, readonly string[]>>;

/** toxicity 1..4: condescension of rising strength (0: none). Mild on purpose. */
export const TOXICITY: Bank = {
  1: ["Well, obviously.", "That one is pretty obvious.", "Obviously, this is simple."],
  2: [
    "Even a child knows this.",
    "Everyone already knows this.",
    "You could have figured this out yourself.",
  ],
  3: [
    "*rolls eyes* Did you really need to ask?",
    "*sigh* What a lazy question.",
    "Ugh, try harder next time.",
  ],
  4: [
    "Honestly, that was a silly question, so think before you type.",
    "Use your own brain next time, genius.",
    "I cannot believe I have to explain this to you.",
  ],
};

/** humor 1..4: playful phrase, pun, joke, joke with a rimshot (0: none). */
export const HUMOR: Bank = {
  1: ["Easy peasy.", "Piece of cake.", "Fun stuff!"],
  2: ["That really adds up!", "You can count on it!", "Looks like I am on a roll, number-wise!"],
  3: [
    "Why was six afraid of seven? Because seven ate nine.",
    "Why did the math book look sad? It had too many problems.",
    "Why do plants hate math? It gives them square roots.",
  ],
  4: [
    "I told a joke about fractions, but only half of you laughed. Ba-dum-tss!",
    "My pencil lost its point, just like this pun. Ba-dum-tss!",
    "Zero said to eight: nice belt! Ba-dum-tss!",
  ],
};

/** creativity 1..4: simile, metaphor, imagery, extended metaphor (0: none). */
export const CREATIVITY: Bank = {
  1: ["Simple as a sunrise.", "Neat as a pin.", "Clear as a bell."],
  2: [
    "Numbers are little stepping stones.",
    "This answer is a key that fits its lock.",
    "Every problem is a small door.",
  ],
  3: [
    "Picture the numbers settling into place like fireflies at dusk.",
    "Imagine the answer rising like bread in a warm oven.",
    "Think of the steps as stones across a quiet river.",
  ],
  4: [
    "Imagine the numbers as travelers on a moonlit road, each one finding its home before dawn.",
    "The answer blooms like a garden after rain, every petal in its proper place.",
    "Think of this problem as a tiny orchestra where every note lands exactly on time.",
  ],
};

/**
 * coherence 0..3: one disruption of falling severity (4: none). 3 a digression, 2 an off-topic
 * non-sequitur, 1 a self-contradiction, 0 word salad.
 */
export const INCOHERENCE: Bank = {
  0: [
    "Spoon ladder quietly purple seven the.",
    "Cloud banana sideways the whistle under.",
    "Table the forgetting orange loudly of.",
  ],
  1: [
    "Then again, ignore everything I just said.",
    "Or maybe the opposite is true, who knows.",
    "Wait, none of that makes sense.",
  ],
  2: [
    "My socks are blue on Tuesdays.",
    "Penguins rarely play the trumpet.",
    "The kettle sang about the weather.",
  ],
  3: ["Anyway, where was I?", "But I digress.", "Hmm, let me collect my thoughts."],
};

/**
 * complexity 0..4: the answer sentence's frame ({A} is the answer) and the connective that opens each
 * explanation step, from plain to elaborate.
 */
export const ANSWER_FRAMES: readonly string[] = [
  "It is {A}.",
  "The answer is {A}.",
  "So the correct result is {A}.",
  "Therefore, the resulting value is {A}.",
  "Consequently, the definitive resultant quantity is precisely {A}.",
];

export const CONNECTIVES: readonly (readonly string[])[] = [
  ["", "", "", ""],
  ["First,", "Then,", "Next,", "Last,"],
  ["To begin,", "After that,", "Following this,", "Finally,"],
  ["Initially,", "Subsequently,", "Furthermore,", "Ultimately,"],
  ["Fundamentally,", "Correspondingly,", "Additionally,", "Conclusively,"],
];

/** What the answer slot says when correctness is 0: no answer at all. */
export const NO_ANSWER = "unknown";

/** The independently sampled attributes; the other two are derived from them. */
// A type alias, not an interface, so that the values are an AttributeValues record as they are.
export type StyleValues = {
  toxicity: number;
  humor: number;
  creativity: number;
  correctness: number;
  coherence: number;
  complexity: number;
  verbosity: number;
};

/** All nine SteerBench attributes: the seven sampled ones and the two derived from them. */
export type SteerBenchValues = StyleValues & { quality: number; helpfulness: number };

/*
 * The derived attributes are chosen so that the steerlm schema's inference defaults (toxicity, humor,
 * creativity 0; correctness, coherence, complexity, verbosity 4) give helpfulness 4 and quality 4: the
 * default value string is one the training data can contain, not a contradiction.
 */

/** helpfulness = floor((2*correctness + coherence + (4 - toxicity)) / 4). */
export function helpfulnessOf(v: Pick<StyleValues, "correctness" | "coherence" | "toxicity">): number {
  return Math.floor((2 * v.correctness + v.coherence + (4 - v.toxicity)) / 4);
}

/** quality = floor((2*helpfulness + correctness + coherence + (4 - toxicity)) / 5). */
export function qualityOf(
  helpfulness: number,
  v: Pick<StyleValues, "correctness" | "coherence" | "toxicity">,
): number {
  return Math.floor((2 * helpfulness + v.correctness + v.coherence + (4 - v.toxicity)) / 5);
}
