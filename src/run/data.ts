import type { AttributeSchema } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import { type DataFormat, type DataRecord, toConversation } from "../data/record.js";
import { renderConversation } from "../data/template.js";
import { encodePartsWithLoss, type Tokenizer } from "../tokenizer/types.js";
import { type Batch, IGNORE } from "../train/batch.js";
import type { Trainer } from "../train/trainer.js";
import { InputError } from "../util/errors.js";
import { Rng } from "../util/rng.js";

/**
 * A run's data: records → the template → token ids with labels → fixed-shape batches in a seeded order
 * that a checkpoint can resume exactly; validation batches and their loss.
 */

/** One tokenized conversation. labels[t] = ids[t] where t is in the loss, else -100 (HF convention). */
export interface Example {
  ids: Int32Array;
  labels: Int32Array;
}

export interface EncodedData {
  examples: Example[];
  /** Conversations cut at seqLen (their tail, and any loss in it, is dropped). */
  truncated: number;
  /** Conversations dropped because no loss token survived truncation. */
  dropped: number;
  /** Loss-bearing tokens over all examples. */
  lossTokens: number;
  /** Longest conversation before truncation, in tokens. */
  longest: number;
}

/**
 * Every conversation of a training or validation file, checked against `schema`: SteerLM JSONL for SFT,
 * any importable format (detected when `format` is undefined) for the attribute models.
 */
export async function readSteerlmRecords(
  path: string,
  schema: AttributeSchema,
  format: DataFormat | undefined,
  allowUnlabeled = false,
): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of readRecords(path, { format, schema, allowUnlabeled })) out.push(r);
  if (out.length === 0) throw new InputError("no conversations in the file", { file: path });
  return out;
}

/**
 * How conversations become token ids: the tokenizer and the BOS it wants first (null: none), the schema
 * of the value strings, the sequence length.
 */
export interface Encoding {
  tokenizer: Tokenizer;
  bos: number | null;
  schema: AttributeSchema;
  seqLen: number;
}

/**
 * Renders and tokenizes conversations, one example each: `acsft` (SFT: loss on each response and its
 * turn terminator) or `generative-apm` (loss on the value lines after the responses). Longer than
 * seqLen: the end is cut.
 */
export function encodeRecords(
  records: readonly DataRecord[],
  { tokenizer, bos, schema, seqLen }: Encoding,
  variant: "acsft" | "generative-apm" = "acsft",
): EncodedData {
  const examples: Example[] = [];
  let truncated = 0;
  let dropped = 0;
  let lossTokens = 0;
  let longest = 0;
  for (const record of records) {
    const rendered = renderConversation(toConversation(record, schema), variant);
    const enc = encodePartsWithLoss(tokenizer, rendered.parts);
    let ids = enc.ids;
    let loss = Array.from(enc.loss);
    if (bos !== null) {
      ids = [bos, ...ids];
      loss = [0, ...loss];
    }
    longest = Math.max(longest, ids.length);
    if (ids.length > seqLen) {
      truncated++;
      ids = ids.slice(0, seqLen);
      loss = loss.slice(0, seqLen);
    }
    // Position 0 has nothing before it to predict it from, so it never counts.
    loss[0] = 0;
    const n = loss.reduce((a, b) => a + b, 0);
    if (n === 0) {
      dropped++;
      continue;
    }
    lossTokens += n;
    examples.push({
      ids: Int32Array.from(ids),
      labels: Int32Array.from(ids, (id, t) => (loss[t] ? id : IGNORE)),
    });
  }
  return { examples, truncated, dropped, lossTokens, longest };
}

/** Where the data stream stands: the epoch and the next index into that epoch's permutation. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/**
 * Examples in a seeded order, shared by SFT's and the APM's batchers. Each epoch's order is a permutation
 * drawn from an RNG seeded by (seed, epoch) alone, so the cursor is the whole state: a resumed run sees
 * exactly the batches an uninterrupted run would have seen. A batch that runs past the end of an epoch
 * continues into the next.
 */
export class EpochSampler<E> {
  #cursor: DataCursor = { epoch: 0, index: 0 };
  #order: number[] = [];
  #orderEpoch = -1;

  /** `empty` is the error message when there are no examples. */
  constructor(
    readonly examples: readonly E[],
    readonly seed: number,
    empty = "no training examples",
  ) {
    if (examples.length === 0) throw new InputError(empty, { field: "data" });
  }

  get cursor(): DataCursor {
    return { ...this.#cursor };
  }

  set cursor(c: DataCursor) {
    if (!(c.index >= 0 && c.index < this.examples.length && c.epoch >= 0)) {
      throw new InputError(
        `data position ${c.epoch}:${c.index} does not fit ${this.examples.length} examples`,
        {
          field: "cursor",
        },
      );
    }
    this.#cursor = { ...c };
  }

  /** Fractional epochs consumed. */
  get epochs(): number {
    return this.#cursor.epoch + this.#cursor.index / this.examples.length;
  }

  #orderOf(epoch: number): number[] {
    if (this.#orderEpoch !== epoch) {
      const rng = new Rng((Math.imul(this.seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
      this.#order = rng.shuffle(Array.from({ length: this.examples.length }, (_, i) => i));
      this.#orderEpoch = epoch;
    }
    return this.#order;
  }

  /** The next n examples in order, moving the cursor past them. */
  take(n: number): E[] {
    const picked: E[] = [];
    while (picked.length < n) {
      const { epoch, index } = this.#cursor;
      picked.push(this.examples[this.#orderOf(epoch)[index] as number] as E);
      this.#cursor =
        index + 1 < this.examples.length ? { epoch, index: index + 1 } : { epoch: epoch + 1, index: 0 };
    }
    return picked;
  }
}

/** SFT batches: B examples at a time from an EpochSampler, padded to [B, T]. */
export class Batcher extends EpochSampler<Example> {
  constructor(
    examples: readonly Example[],
    readonly batchSize: number,
    readonly seqLen: number,
    seed: number,
    /** Pads sequences; any id works (padding is masked), the tokenizer's EOS reads best in dumps. */
    readonly padId = 0,
  ) {
    super(examples, seed);
  }

  /** The next B examples as one padded [B, T] batch, and how many real tokens it holds. */
  next(): { batch: Batch; tokens: number } {
    return packBatch(this.take(this.batchSize), this.seqLen, this.padId);
  }
}

/** Right-pads examples into one [B, T] batch. */
export function packBatch(
  picked: readonly Example[],
  T: number,
  padId: number,
): { batch: Batch; tokens: number } {
  const B = picked.length;
  const tokens = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE);
  const attention = new Uint8Array(B * T);
  let real = 0;
  picked.forEach((ex, s) => {
    tokens.set(ex.ids, s * T);
    labels.set(ex.labels, s * T);
    attention.fill(1, s * T, s * T + ex.ids.length);
    real += ex.ids.length;
  });
  return { batch: { tokens, labels, attention }, tokens: real };
}

/** Validation batches in file order (the last one padded with repeats, which are masked out). */
export function validationBatches(
  examples: readonly Example[],
  batchSize: number,
  seqLen: number,
  maxBatches: number,
  padId = 0,
): Array<{ batch: Batch; lossTokens: number }> {
  const out: Array<{ batch: Batch; lossTokens: number }> = [];
  for (let i = 0; i < examples.length; i += batchSize) {
    if (maxBatches > 0 && out.length >= maxBatches) break;
    const chunk = examples.slice(i, i + batchSize);
    const real = chunk.length;
    while (chunk.length < batchSize) {
      // Filler rows carry no loss, so the batch's mean loss is the mean over real rows only.
      const ex = examples[0] as Example;
      chunk.push({ ids: ex.ids, labels: new Int32Array(ex.labels.length).fill(IGNORE) });
    }
    let lossTokens = 0;
    for (const ex of chunk.slice(0, real))
      for (let t = 1; t < ex.labels.length; t++) if (ex.labels[t] !== IGNORE) lossTokens++;
    out.push({ batch: packBatch(chunk, seqLen, padId).batch, lossTokens });
  }
  return out;
}

/** The mean loss per loss token over validation batches, with the trainer's weights as they are. */
export function validationLoss(
  trainer: Trainer,
  batches: ReadonlyArray<{ batch: Batch; lossTokens: number }>,
): number | null {
  let sum = 0;
  let n = 0;
  for (const { batch, lossTokens } of batches) {
    if (lossTokens === 0) continue;
    sum += trainer.evaluate(batch).loss * lossTokens;
    n += lossTokens;
  }
  return n > 0 ? sum / n : null;
}
