import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { type AttributeSchema, validateSchema } from "../data/attributes.js";
import { Backend, Graph, getF32, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { HEAD_BIAS, HEAD_WEIGHT, regressionHead } from "../model/head.js";
import { buildForward, LlamaModel } from "../model/model.js";
import { type CheckpointData, readCheckpoint, resolveCheckpoint } from "../run/checkpoint.js";
import { tokenizerFromJson } from "../run/setup.js";
import { loadGgufTokenizer } from "../tokenizer/gguf.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { type Batch, prepareBatch } from "../train/batch.js";
import { InputError } from "../util/errors.js";

/**
 * The saved APM is an ordinary steerlm run checkpoint (src/run/checkpoint.ts: the STEERCKP
 * container, JSON header, f32 tensors) of a fully trained model: every backbone weight the head depends on
 * plus `reg_head.weight` [D, K] and `reg_head.bias` [K]. Its header's `settings` carry `task: "apm"` and the `apm` block below,
 * so a checkpoint alone is enough to annotate (the tokenizer trained with --init travels in the header).
 */
export const APM_TASK = "apm";

export type ApmVariant = "regression" | "generative";

export interface ApmInfo {
  variant: ApmVariant;
  /** The schema whose attributes are the K outputs, in output order (stored whole: no file needed later). */
  schema: AttributeSchema;
  /** BOS id prepended to every sequence, or null. */
  bos: number | null;
  /** Sequence length the model was trained with; annotate cuts longer texts' starts to it. */
  seqLen: number;
}

export interface LoadedApm {
  checkpoint: string;
  /** SHA-256 of the checkpoint file: annotate's resume refuses a different model. */
  digest: string;
  info: ApmInfo;
  tokenizer: Tokenizer;
  model: LlamaModel;
  backend: Backend;
  step: number;
  free(): Promise<void>;
}

/** The `apm` block of a checkpoint's settings, or an error saying what the file is instead. */
export function apmInfoOf(data: CheckpointData, file: string): ApmInfo {
  const s = data.header.settings as { task?: unknown; apm?: unknown };
  if (s.task !== APM_TASK || typeof s.apm !== "object" || s.apm === null) {
    throw new InputError(
      "not an attribute prediction model (an SFT checkpoint?)",
      { file },
      "train one with `steerlm apm train -o <run>` and pass the run directory",
    );
  }
  const a = s.apm as { variant?: ApmVariant; schema: unknown; bos: number | null; seqLen: number };
  return {
    variant: a.variant ?? "regression",
    schema: validateSchema(a.schema, file),
    bos: a.bos,
    seqLen: a.seqLen,
  };
}

/** Loads an APM from a run directory (its newest checkpoint) or a checkpoint file. */
export async function loadApm(input: string, threads?: number): Promise<LoadedApm> {
  const checkpoint = resolveCheckpoint(input);
  const bytes = readFileSync(checkpoint);
  const digest = createHash("sha256").update(bytes).digest("hex");
  const data = readCheckpoint(checkpoint);
  const info = apmInfoOf(data, checkpoint);
  const h = data.header;
  const regression = info.variant === "regression";
  if (regression && !data.weights.has(HEAD_WEIGHT))
    throw new InputError(`no ${HEAD_WEIGHT} tensor`, { file: checkpoint });
  let tokenizer: Tokenizer;
  if (h.tokenizer !== null) tokenizer = tokenizerFromJson(h.tokenizer, checkpoint);
  else if (h.baseModel !== null) tokenizer = await loadGgufTokenizer(h.baseModel);
  else throw new InputError("the checkpoint has no tokenizer and no base model", { file: checkpoint });
  const backend = new Backend(threads);
  let model: LlamaModel;
  try {
    model = await LlamaModel.create(
      backend,
      h.model,
      { get: (name) => data.weights.get(name) },
      { regressionOutputs: regression ? info.schema.attributes.length : undefined },
    );
  } catch (err) {
    // the caller only frees what it got back
    backend.free();
    await tokenizer.dispose();
    throw err;
  }
  return {
    checkpoint,
    digest,
    info,
    tokenizer,
    model,
    backend,
    step: h.step,
    async free() {
      model.free();
      backend.free();
      await tokenizer.dispose();
    },
  };
}

/**
 * Forward-only APM on one fixed batch shape [B, T]: the graph is built once and reused. Because the
 * shape never changes, a given batch always gives the same bits (annotate's resume relies on it).
 */
export class ApmPredictor {
  readonly #static: Context;
  readonly #compute: Context;
  readonly #graph: Graph;
  readonly #alloc: ReturnType<Backend["newAllocator"]>;
  readonly #buf: ReturnType<Backend["allocTensors"]>;
  readonly #in: { tokens: Tensor; positions: Tensor; kqMask: Tensor; lastIdx: Tensor };
  readonly #out: Tensor;
  readonly outputs: number;

  constructor(
    readonly backend: Backend,
    readonly model: LlamaModel,
    readonly batchSize: number,
    readonly seqLen: number,
  ) {
    const B = batchSize;
    const T = seqLen;
    this.outputs = model.tensor(HEAD_WEIGHT).ne[1]!;
    this.#static = new Context(8);
    const s = this.#static;
    this.#in = {
      tokens: s.newTensor("i32", [B * T], "tokens"),
      positions: s.newTensor("i32", [B * T], "positions"),
      kqMask: s.newTensor("f32", [T, T, 1, B], "kq_mask"),
      lastIdx: s.newTensor("i32", [B], "last_idx"),
    };
    this.#buf = backend.allocTensors(s);
    const size = 2048 + model.config.numLayers * 128;
    this.#compute = new Context(size * 2, size, { plainOps: !backend.isCpu });
    const c = this.#compute;
    const attn = {
      positions: this.#in.positions,
      kqMask: this.#in.kqMask,
      seqLen: T,
      batch: B,
      ropeMode: model.options.ropeMode,
    };
    const { hidden } = buildForward(c, model, this.#in.tokens, attn, false); // [D, B·T]
    this.#out = regressionHead(
      c,
      hidden,
      this.#in.lastIdx,
      model.tensor(HEAD_WEIGHT),
      model.tensor(HEAD_BIAS),
    ); // [K, B]
    c.setOutput(this.#out);
    this.#graph = new Graph(c, size);
    this.#graph.expand(this.#out);
    this.#alloc = backend.newAllocator();
    this.#alloc.alloc(this.#graph);
  }

  /** Raw predictions [B·K] (row-major by sequence) for a padded batch. */
  predict(batch: Batch): Float32Array {
    const p = prepareBatch(
      { tokens: batch.tokens, attention: batch.attention },
      this.batchSize,
      this.seqLen,
      this.model.config.vocabSize,
      this.outputs,
    );
    setData(this.#in.tokens, p.tokens);
    setData(this.#in.positions, p.positions);
    setData(this.#in.kqMask, p.kqMask);
    setData(this.#in.lastIdx, p.lastIdx);
    this.backend.compute(this.#graph);
    return getF32(this.#out);
  }

  free(): void {
    this.#alloc.free();
    this.#compute.free();
    this.#buf.free();
    this.#static.free();
  }
}
