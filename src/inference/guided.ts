import type { LlamaContext, LlamaContextSequence, Token } from "node-llama-cpp";
import { softmax } from "../util/numbers.js";
import { Rng } from "../util/rng.js";

/**
 * Decoding from a combination of conditionings (mixture.ts): every conditioning's prompt runs in its own
 * context sequence, all of them in lockstep (evaluated together, so node-llama-cpp decodes them in one
 * batch), each step's next-token log-probabilities are combined with the plan's weights, and one token
 * is chosen from the combination and fed to every sequence.
 *
 * The log-probabilities come from node-llama-cpp's evaluation with `probabilities`: at temperature 0 its
 * sampler chain is greedy alone, so the list is the softmax of the raw logits over the
 * whole vocabulary. A probability that underflows float32 to 0 is read as the smallest one float32 holds,
 * so a token one conditioning rules out gets a very low, finite score instead of ±Infinity or NaN.
 */
const LOG_FLOOR = Math.log(1.401298464324817e-45);

/** node-llama-cpp's own defaults when a sampling request leaves them out, so guided sampling matches. */
const SAMPLER_DEFAULTS = { topK: 40, topP: 0.95 };

export interface GuidedSampling {
  /** 0: greedy (argmax of the combination, lowest id on ties). */
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** The combination Σ_i weight_i · log p_i(t), per token id. */
export function combineLogProbs(
  distributions: ReadonlyArray<ReadonlyMap<number, number>>,
  weights: readonly number[],
): Float64Array {
  const size = Math.max(...distributions.map((d) => d.size));
  const out = new Float64Array(size);
  distributions.forEach((d, i) => {
    const w = weights[i]!;
    // Full distributions: every id is below the vocabulary size, which is `size`.
    for (const [token, p] of d) out[token]! += w * (p > 0 ? Math.log(p) : LOG_FLOOR);
  });
  return out;
}

/** Picks a token from combined scores: greedy at temperature 0, else top-k, top-p, temperature, draw. */
export function tokenPicker(s: GuidedSampling): (scores: Float64Array) => number {
  if (s.temperature <= 0 || s.topP === 0) return argmax;
  const rng = new Rng(s.seed ?? Math.floor(Math.random() * 2 ** 32));
  const topK = s.topK ?? SAMPLER_DEFAULTS.topK;
  const topP = s.topP ?? SAMPLER_DEFAULTS.topP;
  return (scores) => {
    let ids = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!);
    if (topK > 0) ids = ids.slice(0, topK);
    const p = softmax(ids.map((i) => scores[i]!));
    let keep = 0;
    for (let acc = 0; keep < ids.length && (keep === 0 || acc < topP); keep++) acc += p[keep]!;
    ids = ids.slice(0, keep);
    const q = softmax(ids.map((i) => scores[i]! / s.temperature));
    let u = rng.float();
    for (const [j, id] of ids.entries()) {
      u -= q[j]!;
      if (u < 0) return id;
    }
    return ids[ids.length - 1]!;
  };
}

function argmax(scores: Float64Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/**
 * Tokens from the combined distribution, forever (the caller stops). `sequences[i]` holds `prompts[i]`
 * (clean histories expected), weighted by `weights[i]`.
 *
 * Each sequence runs one node-llama-cpp evaluation for the whole generation (`evaluateWithMetadata`: one
 * native sampler, made once, where `controlledEvaluate` makes and frees one per call), and every step hands
 * each of them the chosen token at once, so their decodes are queued in the same cycle and node-llama-cpp
 * runs them as one batch. At temperature 0 an evaluation's own pick (its greedy token) is ignored: only its
 * distribution is read.
 */
export async function* guidedTokens(
  sequences: readonly LlamaContextSequence[],
  prompts: readonly (readonly number[])[],
  weights: readonly number[],
  sampling: GuidedSampling,
): AsyncGenerator<Token, void, void> {
  const pick = tokenPicker(sampling);
  const evaluations = prompts.map((p, i) =>
    (sequences[i] as LlamaContextSequence).evaluateWithMetadata(
      p as Token[],
      { probabilities: true },
      // The end-of-generation token is a token like any other here: the combination decides.
      { yieldEogToken: true },
    ),
  );
  try {
    let steps = evaluations.map((e) => e.next());
    for (;;) {
      const outputs = await Promise.all(steps);
      const distributions = outputs.map((out) => {
        if (out.done) throw new Error("node-llama-cpp ended an evaluation before its caller did");
        return out.value.probabilities as ReadonlyMap<number, number>;
      });
      const token = pick(combineLogProbs(distributions, weights)) as Token;
      yield token;
      steps = evaluations.map((e) => e.next(token));
    }
  } finally {
    await Promise.all(evaluations.map((e) => e.return()));
  }
}

/**
 * The sequences of mixed generations: one context created on first use, `slots` groups of `width`
 * sequences in it (a generation holding slot i of the model's pool uses group i). A separate context
 * from the plain path's, so plain generations never share a batch with mixed ones and stay exactly as
 * they were.
 */
export class WideSequences {
  private groups: Promise<LlamaContextSequence[][]> | undefined;
  private context: LlamaContext | undefined;

  constructor(
    readonly slots: number,
    readonly width: number,
    private readonly create: (sequences: number) => Promise<LlamaContext>,
  ) {}

  async group(slot: number): Promise<LlamaContextSequence[]> {
    this.groups ??= this.create(this.slots * this.width).then((context) => {
      this.context = context;
      return Array.from({ length: this.slots }, () =>
        Array.from({ length: this.width }, () => context.getSequence()),
      );
    });
    // A failed creation is not cached: the next request tries again (and gets the same error).
    const groups = await this.groups.catch((err: unknown) => {
      this.groups = undefined;
      throw err;
    });
    return groups[slot] as LlamaContextSequence[];
  }

  async dispose(): Promise<void> {
    await this.context?.dispose();
  }
}
