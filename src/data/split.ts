import { AtomicFile } from "../util/atomic.js";
import type { WriteOptions } from "./formats/context.js";
import type { DataRecord, OutputFormat } from "./record.js";
import { recordLines } from "./write.js";

/**
 * Deterministic train/validation split. The same seed, fraction and records always give the same
 * split, whatever the machine: a seeded generator picks exactly `round(n * fraction)` record indices
 * (Floyd's sampling, memory O(validation size)) and a second pass routes each record.
 */

/** splitmix32: small, fast, and fully specified, so splits are reproducible across platforms. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  const next32 = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  // 53 random bits, so that indices of very large files are uniform too.
  return () => ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
}

export function validationCount(n: number, fraction: number): number {
  if (n === 0 || fraction <= 0) return 0;
  if (fraction >= 1) return n;
  // At least one validation and one training record whenever there are two or more.
  return Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
}

/** `k` distinct indices in 0..n-1 chosen by the seed (Floyd's algorithm). */
export function sampleIndices(n: number, k: number, seed: number): Set<number> {
  const rand = seededRandom(seed);
  const chosen = new Set<number>();
  for (let j = n - k; j < n; j++) {
    const t = Math.floor(rand() * (j + 1));
    chosen.add(chosen.has(t) ? j : t);
  }
  return chosen;
}

export interface SplitOptions {
  /** Share of records that go to validation, 0..1. */
  fraction: number;
  seed: number;
  format: OutputFormat;
  write?: WriteOptions;
}

export interface SplitResult {
  train: number;
  validation: number;
}

/**
 * Splits records into two files, atomically. `records` is called twice (count, then route): it must
 * give the same records in the same order each time, as re-reading a file does.
 */
export async function splitRecords(
  records: () => AsyncIterable<DataRecord>,
  paths: { train: string; validation: string },
  opts: SplitOptions,
): Promise<SplitResult> {
  let n = 0;
  for await (const _ of records()) n++;
  const picked = sampleIndices(n, validationCount(n, opts.fraction), opts.seed);
  const train = await AtomicFile.create(paths.train);
  const validation = await AtomicFile.create(paths.validation).catch(async (err) => {
    await train.abort();
    throw err;
  });
  const result: SplitResult = { train: 0, validation: 0 };
  try {
    let i = 0;
    for await (const r of records()) {
      const toValidation = picked.has(i++);
      const lines = recordLines(r, opts.format, opts.write);
      if (lines.length > 0) await (toValidation ? validation : train).write(`${lines.join("\n")}\n`);
      result[toValidation ? "validation" : "train"]++;
    }
    await train.commit();
    await validation.commit();
  } catch (err) {
    await train.abort();
    await validation.abort();
    throw err;
  }
  return result;
}
