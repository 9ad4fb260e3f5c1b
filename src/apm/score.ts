import { type AttributeSchema, type AttributeValues, toLabel } from "../data/attributes.js";
import { importChat } from "../data/formats/chat.js";
import { fromJs } from "../data/json.js";
import type { DataRecord, RecordTurn } from "../data/record.js";
import { DEFAULT_SYSTEM_PROMPT, joinedSystemPrompt } from "../data/template.js";
import { Engine, type EngineScore, remoteSetting } from "../inference/engine.js";
import { type BackendSettings, checkLocal } from "../inference/open.js";
import { SlotPool } from "../inference/pool.js";
import { UpstreamError } from "../inference/upstream.js";
import { padTokenId } from "../tokenizer/types.js";
import { InputError } from "../util/errors.js";
import { mapOrdered } from "../util/ordered.js";
import { apmTokens } from "./data.js";
import { attributeTokenIds, decodeGenerative, modelPicker, type PickToken } from "./generative.js";
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
 * What predicts a group's labels: the regression APM's batched forward pass, or the generative APM's
 * constrained decoding, `concurrency` records at once, each next token picked here or by an engine.
 */
export type LabelPredictor =
  | ApmPredictor
  | {
      pick: PickToken;
      concurrency: number;
      /** Requests to the engine sent again so far (undefined when decoding here). */
      readonly retries?: number;
    };

/**
 * `apm`'s predictor for groups of B records; a generative one decodes on the engine at `backend` if set
 * (a regression one is served by `steerlm serve --apm` instead: see `remoteLabeller`).
 */
export async function labelPredictor(
  apm: LoadedApm,
  B: number,
  remote: BackendSettings = {},
): Promise<LabelPredictor> {
  if (remote.backend === undefined) {
    checkLocal(remote);
    if (apm.info.variant === "regression")
      return new ApmPredictor(apm.backend, apm.model, B, apm.info.seqLen, padTokenId(apm.tokenizer));
    return { pick: modelPicker(apm.backend, apm.model), concurrency: 1 };
  }
  if (apm.info.variant === "regression")
    throw new InputError(
      "a regression APM predicts with its head, which no engine serves",
      { file: apm.checkpoint, setting: "backend" },
      "serve it with `steerlm serve -m <model> --apm <apm run>` and give only that server's URL (no apm here)",
    );
  const concurrency = remoteSetting("concurrency", remote.concurrency);
  const engine = await Engine.connect({ ...remote, backend: remote.backend, apiKey: remote.backendApiKey });
  const text = (id: number) => apm.tokenizer.decode([id]);
  return {
    pick: (window, candidates) => engine.choose(window, candidates, text),
    concurrency,
    get retries() {
      return engine.retries;
    },
  };
}

/**
 * What labels groups of records for `annotate` and `bootstrap`: an APM loaded here (`apmLabeller`), or the
 * one a `steerlm serve --apm` scores with (`remoteLabeller`).
 */
export interface Labeller {
  /** The attributes the APM predicts, in output order. */
  readonly schema: AttributeSchema;
  /** SHA-256 of the APM's checkpoint: a resumed annotation refuses another model. */
  readonly digest: string;
  /** Requests to an engine sent again so far (undefined when predicting here). */
  readonly retries?: number;
  /**
   * Groups of records worth predicting together: here, LOCAL_GROUPS_AT_ONCE, whose turns the regression
   * APM batches by length (so that each forward pass pads little); a server, as many as requests may be in
   * flight, so that a server going away is met by the next requests, not after a long window.
   */
  readonly groupsAtOnce: number;
  /** Per record of `group`: turn index -> score, for the attributes of `schema`, of the turns `needs` picks. */
  predict(
    schema: AttributeSchema,
    group: readonly DataRecord[],
    needs: (t: RecordTurn) => boolean,
  ): Promise<Array<Map<number, TurnScore>>>;
}

/** Groups a local APM predicts together (Labeller.groupsAtOnce). */
export const LOCAL_GROUPS_AT_ONCE = 16;

/** `apm`, loaded here, predicting with `predictor` (from `labelPredictor`). */
export function apmLabeller(apm: LoadedApm, predictor: LabelPredictor): Labeller {
  return {
    schema: apm.info.schema,
    digest: apm.digest,
    groupsAtOnce: LOCAL_GROUPS_AT_ONCE,
    get retries() {
      return predictor instanceof ApmPredictor ? undefined : predictor.retries;
    },
    predict: (schema, group, needs) => predictGroup(apm, schema, predictor, group, needs),
  };
}

/**
 * The APM of the `steerlm serve --apm` at `remote.backend`, whatever its kind: each turn to predict is
 * sent to POST /v1/steerlm/score as the conversation up to that turn (the server scores its last message
 * as annotate predicts it here, from the same record), `batchSize` conversations per request and at most
 * `concurrency` requests in flight, each retried as every engine request is.
 */
export async function remoteLabeller(
  remote: BackendSettings & { backend: string },
  batchSize: number,
): Promise<Labeller> {
  const concurrency = remoteSetting("concurrency", remote.concurrency);
  const engine = await Engine.connect({ ...remote, apiKey: remote.backendApiKey });
  const { schema: apmSchema, sha256 } = await engine.apm();
  const slots = new SlotPool(
    Array.from({ length: concurrency }, (_, i) => i),
    Number.POSITIVE_INFINITY,
  );
  const request = async (conversations: Array<Array<{ role: string; content: string }>>) => {
    const slot = await slots.acquire();
    try {
      return await engine.score(conversations);
    } finally {
      slots.release(slot);
    }
  };
  return {
    schema: apmSchema,
    digest: sha256,
    groupsAtOnce: concurrency,
    get retries() {
      return engine.retries;
    },
    async predict(schema, group, needs) {
      const jobs: Array<{ record: number; turn: number }> = [];
      group.forEach((r, ri) => {
        r.turns.forEach((t, ti) => {
          if (needs(t)) jobs.push({ record: ri, turn: ti });
        });
      });
      const chunks: Array<typeof jobs> = [];
      for (let i = 0; i < jobs.length; i += batchSize) chunks.push(jobs.slice(i, i + batchSize));
      const answers = await Promise.all(
        chunks.map((chunk) => request(chunk.map((j) => chatMessages(group[j.record] as DataRecord, j.turn)))),
      );
      const out = group.map(() => new Map<number, TurnScore>());
      chunks.forEach((chunk, c) => {
        chunk.forEach((j, k) => {
          out[j.record]?.set(j.turn, engineTurnScore(engine.url, schema, answers[c]![k]!));
        });
      });
      return out;
    },
  };
}

/** Turn `turn` of `record` and what came before it, as the OpenAI-style messages `chatRecord` reads back. */
function chatMessages(record: DataRecord, turn: number): Array<{ role: string; content: string }> {
  return [
    // Always sent, even empty: a conversation without a system message would get the default one.
    { role: "system", content: record.system },
    ...record.turns.slice(0, turn + 1).map((t) => ({ role: t.role, content: t.text })),
  ];
}

/** A server's score, for the attributes of `schema`; a missing or non-integer label is the server's fault. */
function engineTurnScore(url: string, schema: AttributeSchema, s: EngineScore): TurnScore {
  const score: TurnScore = { attributes: {}, labels: {} };
  for (const a of schema.attributes) {
    const x = s.attributes?.[a.name];
    const label = s.labels?.[a.name];
    if (typeof x !== "number" || !Number.isInteger(label))
      throw new UpstreamError(url, `/v1/steerlm/score gave no ${a.name} score`, null);
    score.attributes[a.name] = x;
    score.labels[a.name] = label as number;
  }
  return score;
}

/**
 * Predicts the turns `needs` picks of a group of records (the regression APM: batched by length, each
 * turn's prediction independent of the others). Per record: turn index -> score, for the attributes of
 * `schema`.
 */
export async function predictGroup(
  apm: LoadedApm,
  schema: AttributeSchema,
  predictor: LabelPredictor,
  group: readonly DataRecord[],
  needs: (t: RecordTurn) => boolean,
): Promise<Array<Map<number, TurnScore>>> {
  if (!(predictor instanceof ApmPredictor)) return predictGenerative(apm, schema, group, needs, predictor);
  const out = group.map(() => new Map<number, TurnScore>());
  const K = apm.info.schema.attributes.length;
  const outputs = schema.attributes.map((a) =>
    apm.info.schema.attributes.findIndex((b) => b.name === a.name),
  );
  const jobs: Array<{ record: number; turn: number; ids: Int32Array }> = [];
  group.forEach((r, ri) => {
    r.turns.forEach((t, ti) => {
      if (!needs(t)) return;
      const { ids } = apmTokens(r, ti, apm.tokenizer, apm.info.bos, predictor.seqLen);
      jobs.push({ record: ri, turn: ti, ids });
    });
  });
  const pred = predictor.predict(jobs.map((j) => j.ids)); // [jobs·K]
  jobs.forEach((j, s) => {
    const score: TurnScore = { attributes: {}, labels: {} };
    schema.attributes.forEach((a, k) => {
      const x = pred[s * K + outputs[k]!] as number;
      score.attributes[a.name] = x;
      score.labels[a.name] = toLabel(a, x);
    });
    out[j.record]?.set(j.turn, score);
  });
  return out;
}

/** The generative APM: turns in order, each decoded with the labels already chosen for earlier turns. */
async function predictGenerative(
  apm: LoadedApm,
  schema: AttributeSchema,
  group: readonly DataRecord[],
  needs: (t: RecordTurn) => boolean,
  decoder: { pick: PickToken; concurrency: number },
): Promise<Array<Map<number, TurnScore>>> {
  const pairs = attributeTokenIds(apm.tokenizer, apm.info.schema);
  const record = async (r: DataRecord) => {
    const scores = new Map<number, TurnScore>();
    const earlier = new Map<number, AttributeValues>();
    for (const [ti, t] of r.turns.entries()) {
      if (!needs(t)) continue;
      const { labels: all } = await decodeGenerative(
        apm.tokenizer,
        apm.info.schema,
        pairs,
        r,
        ti,
        earlier,
        apm.info.bos,
        apm.info.seqLen,
        decoder.pick,
      );
      earlier.set(ti, all);
      const labels: AttributeValues = {};
      for (const a of schema.attributes) labels[a.name] = all[a.name]!;
      scores.set(ti, { attributes: { ...labels }, labels });
    }
    return scores;
  };
  const out: Array<Map<number, TurnScore>> = [];
  for await (const scores of mapOrdered(group, decoder.concurrency, record)) out.push(scores);
  return out;
}

/**
 * An OpenAI-style conversation as `steerlm annotate` reads a chat JSONL line (src/data/formats/chat.ts), its
 * system messages first joined into one as the chat endpoint joins them.
 */
export function chatRecord(
  messages: ReadonlyArray<{ role: string; content: string }>,
  schema: AttributeSchema,
): DataRecord {
  const system = joinedSystemPrompt(messages);
  const rest = messages.filter((m) => m.role !== "system");
  const line = system === null ? rest : [{ role: "system", content: system }, ...rest];
  const [record] = importChat(fromJs({ messages: line }), {
    schema,
    origin: { file: "request", line: 1, format: "chat" },
    ensureAscii: false,
    system: DEFAULT_SYSTEM_PROMPT,
  }) as DataRecord[];
  return record as DataRecord;
}

/**
 * An APM loaded for scoring conversations: the last assistant turn of each, every assistant turn
 * predicted as `annotate` predicts it, so a conversation scored here gets the labels annotate writes for it.
 */
export class ApmScorer {
  private constructor(
    private readonly apm: LoadedApm,
    private readonly predictor: LabelPredictor,
    readonly batchSize: number,
  ) {}

  static async load(run: string, opts: { threads?: number; batchSize?: number } = {}): Promise<ApmScorer> {
    const apm = await loadApm(run, opts.threads);
    const B = opts.batchSize ?? ANNOTATE_DEFAULTS.batchSize;
    return new ApmScorer(apm, await labelPredictor(apm, B), B);
  }

  /** The attributes predicted, in output order. */
  get schema(): AttributeSchema {
    return this.apm.info.schema;
  }

  /** The checkpoint file loaded. */
  get checkpoint(): string {
    return this.apm.checkpoint;
  }

  /** SHA-256 of the checkpoint file. */
  get digest(): string {
    return this.apm.digest;
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
      const scores = await predictGroup(this.apm, this.schema, this.predictor, group, assistant);
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
    if (this.predictor instanceof ApmPredictor) this.predictor.free();
    await this.apm.free();
  }
}
