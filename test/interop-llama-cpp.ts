/** node-llama-cpp as the oracle for converted models: its tokenizer and its next-token log-probabilities. */
import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";
import { loadLlamaModel } from "../src/gguf/llama-cpp.js";

export interface LlamaCppRun {
  /** Ids of `text` from the GGUF's own vocabulary (no BOS, special tokens not parsed). */
  tokenize(text: string): number[];
  /** log p(next | prefix) for every position of `ids`, as dense rows of `vocab` entries. */
  logProbs(ids: number[]): Promise<Float64Array[]>;
  vocabSize: number;
  dispose(): Promise<void>;
}

export async function openWithLlamaCpp(path: string, vocabSize: number): Promise<LlamaCppRun> {
  const model = (await loadLlamaModel(path)).model;
  return {
    vocabSize,
    tokenize: (text) => Array.from(model.tokenize(text, false)) as number[],
    async logProbs(ids) {
      // F32 KV cache and no flash attention, so llama.cpp does not round K/V to F16 (a deployment choice).
      const ctx = await model.createContext({
        contextSize: Math.max(32, ids.length + 8),
        threads: 2,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
      });
      try {
        const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
        const input: ControlledEvaluateInputItem[] = ids.map((t) => [
          t as Token,
          { generateNext: { probabilities: true, options: sampling } },
        ]);
        const res = await ctx.getSequence().controlledEvaluate(input);
        return ids.map((_, i) => {
          const probs = res[i]?.next.probabilities;
          if (!probs) throw new Error(`no probabilities at position ${i}`);
          const row = new Float64Array(vocabSize).fill(Number.NEGATIVE_INFINITY);
          for (const [tok, p] of probs) row[tok] = Math.log(p);
          return row;
        });
      } finally {
        await ctx.dispose();
      }
    },
    dispose: () => model.dispose(),
  };
}

/** Max |a - b| over every entry; both rows must be finite where compared. */
export function maxAbsDiff(a: Float64Array[], b: Float64Array[]): number {
  let m = 0;
  a.forEach((row, t) => {
    const other = b[t] as Float64Array;
    for (let i = 0; i < row.length; i++) {
      const d = Math.abs((row[i] as number) - (other[i] as number));
      m = Math.max(m, Number.isNaN(d) ? Number.POSITIVE_INFINITY : d);
    }
  });
  return m;
}

export function argmax(row: Float64Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
}
