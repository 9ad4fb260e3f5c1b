import { type AttributeSchema, type AttributeValues, toLabel } from "../data/attributes.js";
import { importChat } from "../data/formats/chat.js";
import { fromJs } from "../data/json.js";
import type { DataRecord, RecordTurn } from "../data/record.js";
import { DEFAULT_SYSTEM_PROMPT } from "../data/template.js";
import { InputError } from "../util/errors.js";
import { type ApmExample, apmTokens, packApmBatch } from "./data.js";
import { attributeTokenIds, decodeGenerative } from "./generative.js";
import { ApmPredictor, type LoadedApm, loadApm } from "./model.js";

/** Assistant turns per forward pass (and, in `annotate`, records per resumable group). */
export const ANNOTATE_DEFAULTS = { batchSize: 8 };

/**
 * The APM's predictions per assistant turn: the raw values and the labels `steerlm annotate` writes
 * (clamped to the scale, rounded half to even). `annotate` and the scoring API (`ApmScorer`, behind
 * `POST /v1/steerlm/score`) both predict through `predictGroup`, so they agree label for label.
 */
export interface TurnScore {
  /** Raw predictions (the generative APM's are its decoded integers). */
  attributes: Record<string, number>;
  labels: AttributeValues;
}

/**
 * Predicts the turns `needs` picks of a group of records (at most the predictor's batch size of them per
 * forward pass, in order). Per record: turn index -> score, for the attributes of `schema`.
 */
export function predictGroup(
  apm: LoadedApm,
  schema: AttributeSchema,
  predictor: ApmPredictor | null,
  group: readonly DataRecord[],
  needs: (t: RecordTurn) => boolean,
): Array<Map<number, TurnScore>> {
  const out = group.map(() => new Map<number, TurnScore>());
  if (predictor === null) {
    predictGenerative(apm, schema, group, needs, out);
    return out;
  }
  const { batchSize: B, seqLen: T } = predictor;
  const K = apm.info.schema.attributes.length;
  const pad = apm.tokenizer.eosId ?? 0;
  const outputs = schema.attributes.map((a) =>
    apm.info.schema.attributes.findIndex((b) => b.name === a.name),
  );
  const jobs: Array<{ record: number; turn: number; ex: ApmExample }> = [];
  group.forEach((r, ri) => {
    r.turns.forEach((t, ti) => {
      if (!needs(t)) return;
      const { ids } = apmTokens(r, ti, apm.tokenizer, apm.info.bos, T);
      jobs.push({ record: ri, turn: ti, ex: { ids, targets: new Float32Array(K) } });
    });
  });
  for (let i = 0; i < jobs.length; i += B) {
    const chunk = jobs.slice(i, i + B);
    const batch = packApmBatch(
      chunk.map((j) => j.ex),
      B,
      T,
      K,
      pad,
    ).batch;
    const pred = predictor.predict(batch); // [B·K]
    chunk.forEach((j, s) => {
      const score: TurnScore = { attributes: {}, labels: {} };
      schema.attributes.forEach((a, k) => {
        const x = pred[s * K + (outputs[k] as number)] as number;
        score.attributes[a.name] = x;
        score.labels[a.name] = toLabel(a, x);
      });
      out[j.record]?.set(j.turn, score);
    });
  }
  return out;
}

/** The generative APM: turns in order, each decoded with the labels already chosen for earlier turns. */
function predictGenerative(
  apm: LoadedApm,
  schema: AttributeSchema,
  group: readonly DataRecord[],
  needs: (t: RecordTurn) => boolean,
  out: Array<Map<number, TurnScore>>,
): void {
  const pairs = attributeTokenIds(apm.tokenizer, apm.info.schema);
  group.forEach((r, ri) => {
    const earlier = new Map<number, AttributeValues>();
    r.turns.forEach((t, ti) => {
      if (!needs(t)) return;
      const { labels: all } = decodeGenerative(
        apm.backend,
        apm.model,
        apm.tokenizer,
        apm.info.schema,
        pairs,
        r,
        ti,
        earlier,
        apm.info.bos,
        apm.info.seqLen,
      );
      earlier.set(ti, all);
      const labels: AttributeValues = {};
      for (const a of schema.attributes) labels[a.name] = all[a.name] as number;
      out[ri]?.set(ti, { attributes: { ...labels }, labels });
    });
  });
}

/** An OpenAI-style conversation as `steerlm annotate` reads a chat JSONL line (src/data/formats/chat.ts). */
export function chatRecord(
  messages: ReadonlyArray<{ role: string; content: string }>,
  schema: AttributeSchema,
): DataRecord {
  const [record] = importChat(fromJs({ messages }), {
    schema,
    origin: { file: "request", line: 1, format: "chat" },
    ensureAscii: false,
    system: DEFAULT_SYSTEM_PROMPT,
  }) as DataRecord[];
  return record as DataRecord;
}

/**
 * An APM loaded for scoring conversations: the last assistant turn of each, every assistant turn
 * predicted as `annotate` predicts it (the same batch shape, the same groups of `batchSize` records in
 * order), so a conversation scored here gets the labels annotate writes for it in the same position.
 */
export class ApmScorer {
  private constructor(
    private readonly apm: LoadedApm,
    private readonly predictor: ApmPredictor | null,
    readonly batchSize: number,
  ) {}

  static async load(run: string, opts: { threads?: number; batchSize?: number } = {}): Promise<ApmScorer> {
    const apm = await loadApm(run, opts.threads);
    const B = opts.batchSize ?? ANNOTATE_DEFAULTS.batchSize;
    const predictor =
      apm.info.variant === "regression" ? new ApmPredictor(apm.backend, apm.model, B, apm.info.seqLen) : null;
    return new ApmScorer(apm, predictor, B);
  }

  /** The attributes predicted, in output order. */
  get schema(): AttributeSchema {
    return this.apm.info.schema;
  }

  /** The checkpoint file loaded. */
  get checkpoint(): string {
    return this.apm.checkpoint;
  }

  /**
   * The last assistant turn of each record. Yields to the event loop between groups: the forward pass
   * is synchronous, and a server has other requests to stream meanwhile.
   */
  async score(records: readonly DataRecord[]): Promise<TurnScore[]> {
    const out: TurnScore[] = [];
    const assistant = (t: RecordTurn) => t.role === "assistant";
    for (let i = 0; i < records.length; i += this.batchSize) {
      const group = records.slice(i, i + this.batchSize);
      const scores = predictGroup(this.apm, this.schema, this.predictor, group, assistant);
      group.forEach((r, g) => {
        const last = r.turns.findLastIndex(assistant);
        const score = scores[g]?.get(last);
        if (!score) throw new InputError("no assistant turn to score", { field: `conversations[${i + g}]` });
        out.push(score);
      });
      await new Promise((resolve) => setImmediate(resolve));
    }
    return out;
  }

  async free(): Promise<void> {
    this.predictor?.free();
    await this.apm.free();
  }
}
