import type { LlamaContextSequence, Token } from "node-llama-cpp";

/**
 * Prompt caching: a context sequence keeps the keys and values of what it last evaluated, and the next
 * request that shares a prefix with it (a system prompt, earlier turns) evaluates only the rest. The
 * model's sequences are the cache: as many entries as `parallel`, each one overwritten by the request
 * that takes it. A request takes the free sequence whose cache it gains the most from and destroys the
 * least of (`score`), the one free the longest among equals: an unrelated prompt goes to an empty or
 * stale sequence rather than over a long shared system prompt.
 *
 * Greedy outputs are the same bytes as without the cache. On the CPU, llama.cpp computes a batch of one
 * token with other kernels than a batch of several (the float sums run in another order), and flash
 * attention differs again by batch size (the contexts turn it off). So only keys and values computed in
 * batches of several tokens are reused, never those of generated tokens (evaluated one at a time), and
 * the evaluation of the rest ends with a one-token batch exactly when a fresh evaluation of the whole
 * prompt would. Measured: test/serve-cache.test.ts, and docs/serving.md for the speed.
 */
export class CachedSequence {
  /** Leading held tokens whose keys and values were computed in batches of several tokens. */
  private exact = 0;

  constructor(
    readonly sequence: LlamaContextSequence,
    /** False: every request starts from an empty sequence. */
    private readonly enabled: boolean,
  ) {}

  /**
   * How many leading tokens of `prompt` this sequence would not evaluate again. The last prompt token is
   * always evaluated (its logits choose the first generated token).
   */
  reusable(prompt: readonly number[]): number {
    // A sequence that must restore checkpoints (recurrent, sliding-window) re-evaluates on its own terms.
    if (!this.enabled || this.sequence.needsCheckpoints) return 0;
    const held = this.sequence.contextTokens;
    const most = Math.min(this.exact, prompt.length - 1);
    let n = 0;
    while (n < most && held[n] === prompt[n]) n++;
    return alignToBatches(n, prompt.length, this.sequence.context.batchSize);
  }

  /** Tokens reused minus cached tokens discarded, were this sequence to run `prompt`. */
  score(prompt: readonly number[]): number {
    const reused = this.reusable(prompt);
    return reused - (this.exact - reused);
  }

  /**
   * Erases what follows the part of `prompt` it reuses; returns the tokens left to evaluate. Call
   * `evaluated` once they are, or `clear` when the sequence's state is not known (an error, an abort).
   */
  async prepare(prompt: readonly number[]): Promise<{ reused: number; rest: Token[] }> {
    const reused = this.reusable(prompt);
    const end = this.sequence.nextTokenIndex;
    if (reused < end) await this.sequence.eraseContextTokenRanges([{ start: reused, end }]);
    this.exact = Math.min(this.exact, reused);
    return { reused, rest: prompt.slice(reused) as Token[] };
  }

  /** The prompt `prepare` was given has been evaluated (tokens generated after it are never reused). */
  evaluated(promptLength: number, reused: number): void {
    if (!this.enabled) return;
    const lastBatchSingle = isSingle(promptLength - reused, this.sequence.context.batchSize);
    this.exact = lastBatchSingle ? promptLength - 1 : promptLength;
  }

  async clear(): Promise<void> {
    this.exact = 0;
    await this.sequence.clearHistory();
  }
}

/** node-llama-cpp evaluates `length` tokens in batches of `batchSize`: is the last one a single token? */
const isSingle = (length: number, batchSize: number) => length % batchSize === 1;

/**
 * The longest reuse of at most `keep` tokens after which evaluating the rest of a `length`-token prompt
 * ends with a one-token batch exactly when evaluating all of it does (see CachedSequence).
 */
export function alignToBatches(keep: number, length: number, batchSize: number): number {
  if (isSingle(length, batchSize)) return keep - (keep % batchSize);
  return isSingle(length - keep, batchSize) ? keep - 1 : keep;
}
