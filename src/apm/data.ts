import type { AttributeSchema, AttributeValues } from "../data/attributes.js";
import { type DataRecord, toConversation } from "../data/record.js";
import { renderConversation } from "../data/template.js";
import { type DataCursor, type Encoding, EpochSampler } from "../run/data.js";
import { encodeParts, type Tokenizer } from "../tokenizer/types.js";
import { type Batch, IGNORE } from "../train/batch.js";

/**
 * APM data: every labelled assistant turn of a conversation becomes one example — the conversation up to
 * and including that turn, rendered with the `regression` template (it ends in `<extra_id_2>`, whose final
 * hidden state the head reads) — with one target per schema attribute, IGNORE (the trainer's mask) where the label is missing.
 */
export interface ApmExample {
  ids: Int32Array;
  /** [K] in the schema's order; IGNORE = missing (masked out of the MSE). */
  targets: Float32Array;
}

/** The schema's attributes as K targets; null when the turn has none of them. */
export function apmTargets(labels: AttributeValues | null, schema: AttributeSchema): Float32Array | null {
  if (labels === null) return null;
  const t = new Float32Array(schema.attributes.length).fill(IGNORE);
  let any = false;
  schema.attributes.forEach((a, k) => {
    const v = labels[a.name];
    if (v === undefined) return;
    t[k] = v;
    any = true;
  });
  return any ? t : null;
}

/**
 * Token ids the APM scores for assistant turn `turn` of `record`: BOS (when the vocabulary wants one),
 * then the regression text. Longer than `seqLen`: the head reads the last token, so the *start* is cut.
 */
export function apmTokens(
  record: DataRecord,
  turn: number,
  tokenizer: Tokenizer,
  bos: number | null,
  seqLen: number,
): { ids: Int32Array; truncated: boolean } {
  const sub: DataRecord = { ...record, turns: record.turns.slice(0, turn + 1) };
  const rendered = renderConversation(toConversation(sub), "regression");
  let ids = encodeParts(tokenizer, rendered.parts);
  if (bos !== null) ids = [bos, ...ids];
  const truncated = ids.length > seqLen;
  if (truncated) ids = ids.slice(ids.length - seqLen);
  return { ids: Int32Array.from(ids), truncated };
}

export interface EncodedApmData {
  examples: ApmExample[];
  /** Labelled turns longer than seqLen (their start was cut). */
  truncated: number;
  /** Labelled assistant turns whose labels had no attribute of the schema. */
  unusable: number;
}

export function encodeApmRecords(records: readonly DataRecord[], enc: Encoding): EncodedApmData {
  const examples: ApmExample[] = [];
  let truncated = 0;
  let unusable = 0;
  for (const record of records) {
    record.turns.forEach((turn, i) => {
      if (turn.role !== "assistant" || turn.labels === null) return;
      const targets = apmTargets(turn.labels, enc.schema);
      if (!targets) {
        unusable++;
        return;
      }
      const tokens = apmTokens(record, i, enc.tokenizer, enc.bos, enc.seqLen);
      if (tokens.truncated) truncated++;
      examples.push({ ids: tokens.ids, targets });
    });
  }
  return { examples, truncated, unusable };
}

/** Right-pads examples into one [B, T] regression batch (filler rows: all targets missing). */
export function packApmBatch(
  picked: readonly ApmExample[],
  B: number,
  T: number,
  K: number,
  padId: number,
): { batch: Batch; tokens: number } {
  const tokens = new Int32Array(B * T).fill(padId);
  const attention = new Uint8Array(B * T);
  const targets = new Float32Array(B * K).fill(IGNORE);
  let real = 0;
  for (let s = 0; s < B; s++) {
    const ex = picked[s];
    if (!ex) {
      attention[s * T] = 1; // a filler row needs one real token; its targets are all missing
      continue;
    }
    tokens.set(ex.ids, s * T);
    attention.fill(1, s * T, s * T + ex.ids.length);
    targets.set(ex.targets, s * K);
    real += ex.ids.length;
  }
  return { batch: { tokens, attention, targets }, tokens: real };
}

/** Where the data stream stands (SFT's cursor: epoch, index into its permutation). */
export type ApmCursor = DataCursor;

/**
 * SFT's seeded epoch permutations, so that the cursor alone is the data state and a resumed run sees the
 * batches an uninterrupted one would have.
 */
export class ApmBatcher extends EpochSampler<ApmExample> {
  constructor(
    examples: readonly ApmExample[],
    readonly batchSize: number,
    readonly seqLen: number,
    readonly outputs: number,
    seed: number,
    readonly padId = 0,
  ) {
    super(examples, seed, "no labelled assistant turns to train on");
  }

  next(): { batch: Batch; tokens: number } {
    return packApmBatch(this.take(this.batchSize), this.batchSize, this.seqLen, this.outputs, this.padId);
  }
}
