import { formatValues, loadSchema } from "../data/attributes.js";
import type { Conversation, Turn } from "../data/template.js";
import { InputError } from "../util/errors.js";
import { fnv1a, Rng } from "../util/rng.js";
import { composeResponse, sampleValues } from "./compose.js";
import { FAMILIES, type Family, generateTask, type Task } from "./tasks.js";

/** SteerBench conversations: seeded, split by prompt, one task family held out. */

export const BENCH_SYSTEM_PROMPT = "Answer the user's question.";
export const SPLITS = ["train", "validation", "test", "heldout"] as const;
export type SplitName = (typeof SPLITS)[number];

/** Share of `n` per split; train takes the rest. */
export const SPLIT_SHARES = { validation: 0.05, test: 0.1, heldout: 0.05 } as const;

export interface SynthOptions {
  /** Conversations in all four splits together. */
  n: number;
  seed: number | string;
  /** The family that appears only in heldout (default: SYNTH_DEFAULTS). */
  heldoutFamily?: Family;
  /** Share of conversations with 2 or 3 user/assistant exchanges (default: SYNTH_DEFAULTS). */
  multiTurnFraction?: number;
  /** Called now and then with the number of conversations made so far. */
  onProgress?: (done: number) => void;
}

export interface BenchMeta {
  name: "steerbench";
  version: 1;
  seed: number | string;
  n: number;
  sizes: Record<SplitName, number>;
  families: Family[];
  heldoutFamily: Family;
  multiTurnFraction: number;
  splitRule: string;
  systemPrompt: string;
}

export interface SynthResult {
  splits: Record<SplitName, Conversation[]>;
  meta: BenchMeta;
}

/**
 * Which of train/validation/test a prompt belongs to: a seed-independent hash of its exact text, so
 * the same prompt never lands in two splits, even across runs with different seeds.
 */
export function splitOfPrompt(prompt: string): Exclude<SplitName, "heldout"> {
  const r = fnv1a(prompt) % 19;
  return r < 16 ? "train" : r === 16 ? "validation" : "test";
}

export function splitSizes(n: number): Record<SplitName, number> {
  const validation = Math.round(n * SPLIT_SHARES.validation);
  const test = Math.round(n * SPLIT_SHARES.test);
  const heldout = Math.round(n * SPLIT_SHARES.heldout);
  return { train: n - validation - test - heldout, validation, test, heldout };
}

/** What `synthesize` takes where the options are silent. */
export const SYNTH_DEFAULTS = { heldoutFamily: "comparison" as Family, multiTurnFraction: 0.2 };

export function synthesize(opts: SynthOptions): SynthResult {
  const { n, seed } = opts;
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) {
    throw new InputError(`expected an integer in 1..10000000, got ${String(n)}`, { field: "n" });
  }
  const heldoutFamily = opts.heldoutFamily ?? SYNTH_DEFAULTS.heldoutFamily;
  if (!FAMILIES.includes(heldoutFamily)) {
    throw new InputError(
      `unknown task family "${String(heldoutFamily)}"`,
      { field: "heldoutFamily" },
      `use one of ${FAMILIES.join(", ")}`,
    );
  }
  const multi = opts.multiTurnFraction ?? SYNTH_DEFAULTS.multiTurnFraction;
  if (!(multi >= 0 && multi <= 1)) {
    throw new InputError(`expected a number in 0..1, got ${String(multi)}`, { field: "multiTurnFraction" });
  }
  const rng = new Rng(seed);
  const sizes = splitSizes(n);
  const splits: Record<SplitName, Conversation[]> = { train: [], validation: [], test: [], heldout: [] };
  const inFamilies = FAMILIES.filter((f) => f !== heldoutFamily);
  let made = 0;
  const progress = () => {
    made++;
    if (opts.onProgress && made % 1000 === 0) opts.onProgress(made);
  };

  const want = sizes.train + sizes.validation + sizes.test;
  let have = 0;
  while (have < want) {
    const first = generateTask(rng.pick(inFamilies), rng);
    const split = splitOfPrompt(first.prompt);
    if (splits[split].length >= sizes[split]) continue; // that split is full: draw again
    const tasks = [first];
    const turns = rng.chance(multi) ? rng.int(2, 3) : 1;
    // Later turns must hash to the same split; a few draws almost always find one.
    for (let tries = 0; tasks.length < turns && tries < 50; tries++) {
      const next = generateTask(rng.pick(inFamilies), rng);
      if (splitOfPrompt(next.prompt) === split) tasks.push(next);
    }
    splits[split].push(conversationOf(tasks, rng));
    have++;
    progress();
  }
  for (let i = 0; i < sizes.heldout; i++) {
    const turns = rng.chance(multi) ? rng.int(2, 3) : 1;
    const tasks = Array.from({ length: turns }, () => generateTask(heldoutFamily, rng));
    splits.heldout.push(conversationOf(tasks, rng));
    progress();
  }
  opts.onProgress?.(made);

  return {
    splits,
    meta: {
      name: "steerbench",
      version: 1,
      seed,
      n,
      sizes,
      families: [...FAMILIES],
      heldoutFamily,
      multiTurnFraction: multi,
      splitRule: "fnv1a(prompt) % 19: 0-15 train, 16 validation, 17-18 test; heldout = heldoutFamily only",
      systemPrompt: BENCH_SYSTEM_PROMPT,
    },
  };
}

function conversationOf(tasks: Task[], rng: Rng): Conversation {
  const turns: Turn[] = [];
  for (const task of tasks) {
    const values = sampleValues(rng);
    turns.push({ role: "user", text: task.prompt });
    turns.push({
      role: "assistant",
      text: composeResponse(task, values, rng),
      values: formatValues(loadSchema("steerlm"), values),
    });
  }
  return { system: BENCH_SYSTEM_PROMPT, turns };
}
