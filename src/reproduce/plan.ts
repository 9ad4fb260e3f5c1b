import { DEMO_PLANS } from "../demo/demo.js";
import type { ModelInitInput, SftConfig } from "../run/settings.js";

/**
 * The ablation's arms and the sizes of a full and a quick run. Every arm trains the demo's model shape
 * with the demo's tokenizer (one token per attribute setting) for the same number of steps of the same
 * batch shape: the same token budget, so arms differ only in their data and labels.
 */
export const ARMS = ["sft", "sft-hq", "acsft", "acsft-apm", "acsft-apm-more", "bootstrap"] as const;
export type Arm = (typeof ARMS)[number];

/** Arms trained without a value line, judged on the bare prompt. */
export const PLAIN_ARMS: readonly Arm[] = ["sft", "sft-hq"];

export const ARM_DESCRIPTIONS: Record<Arm, string> = {
  sft: "plain SFT on every training conversation, no value line",
  "sft-hq": "plain SFT on the high-quality subset only",
  acsft: "attribute-conditioned SFT with the generator's labels (the human labels)",
  "acsft-apm": "ACSFT on APM labels: the APM trained on a labelled fraction annotates the rest",
  "acsft-apm-more": "as acsft-apm, plus an extra unlabelled pool annotated by the APM",
  bootstrap:
    "acsft-apm-more's data plus one bootstrapping round (its model answers at top-quality values, the APM re-annotates)",
};

export interface ReproducePlan {
  /** SteerBench conversations per seed (all four splits). */
  conversations: number;
  /** Conversations of the extra unlabelled pool (its training split is used). */
  extraConversations: number;
  multiTurnFraction: number;
  /** Share of the training conversations whose labels the APM is trained on. */
  labelledFraction: number;
  /** Every assistant turn at least this quality makes a conversation "high quality" (sft-hq). */
  highQuality: number;
  model: ModelInitInput;
  /** Settings of every arm's SFT run and of the APM's (same shape, `apmSteps` steps). */
  sft: Partial<SftConfig>;
  apmSteps: number;
  /** Training prompts answered by the bootstrapping round. */
  bootstrapPrompts: number;
  /** Judged prompts per split (test, held-out family) and seed. */
  judgePrompts: number;
  /** Prompts per level of the steering curves (test split), per seed. */
  steerPrompts: number;
  maxTokens: number;
}

/**
 * A run sized as the demo of the same name (its data, model and generation length), with the ablation's
 * own labelled fraction, high-quality bar and extra pool (half the data again); `own` gives the rest.
 */
function fromDemo(
  size: "full" | "quick",
  own: Pick<ReproducePlan, "apmSteps" | "bootstrapPrompts" | "judgePrompts" | "steerPrompts"> & {
    sft: Partial<SftConfig>;
  },
): ReproducePlan {
  const demo = DEMO_PLANS[size];
  // in the fields' order: a resumed run compares its recorded settings with these as JSON
  return {
    conversations: demo.conversations,
    extraConversations: demo.conversations / 2,
    multiTurnFraction: demo.multiTurnFraction,
    labelledFraction: 0.25,
    highQuality: 3,
    model: demo.model,
    sft: { ...demo.sft, ...own.sft },
    apmSteps: own.apmSteps,
    bootstrapPrompts: own.bootstrapPrompts,
    judgePrompts: own.judgePrompts,
    steerPrompts: own.steerPrompts,
    maxTokens: demo.maxTokens,
  };
}

/** The training seeds each plan runs when none are given. */
export const REPRODUCE_SEEDS: Record<"full" | "quick", readonly number[]> = { full: [1, 2, 3], quick: [1] };

export const REPRODUCE_PLANS: Record<"full" | "quick", ReproducePlan> = {
  full: fromDemo("full", {
    // the demo's settings at half its steps: the style attributes are learnt by step ~600 (docs/demo.md)
    sft: { steps: 1200, evalEvery: 300, checkpointEvery: 300 },
    apmSteps: 600,
    bootstrapPrompts: 1000,
    judgePrompts: 100,
    steerPrompts: 40,
  }),
  quick: fromDemo("quick", {
    sft: { steps: 250, evalEvery: 125, checkpointEvery: 125 },
    apmSteps: 150,
    bootstrapPrompts: 120,
    judgePrompts: 20,
    steerPrompts: 10,
  }),
};
