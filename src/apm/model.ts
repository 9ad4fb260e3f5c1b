import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { type AttributeSchema, validateSchema } from "../data/attributes.js";
import { Backend, type Buffer, Graph, type GraphAllocator, getF32, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { HEAD_BIAS, HEAD_WEIGHT, regressionHead } from "../model/head.js";
import { buildForward, LlamaModel } from "../model/model.js";
import { type CheckpointData, checkpointBase, readCheckpoint, resolveCheckpoint } from "../run/checkpoint.js";
import { tokenizerFromJson } from "../run/setup.js";
import { loadGgufTokenizer } from "../tokenizer/gguf.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { prepareBatch } from "../train/batch.js";
import { InputError } from "../util/errors.js";
import { packApmBatch } from "./data.js";

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
  const basePath = h.tokenizer === null ? await checkpointBase(h, checkpoint) : null;
  if (h.tokenizer !== null) tokenizer = tokenizerFromJson(h.tokenizer, checkpoint);
  else if (basePath !== null) tokenizer = await loadGgufTokenizer(basePath);
  else throw new InputError("the checkpoint has no tokenizer and no base model", { file: checkpoint });
  const backend = new Backend(threads);
  let model: LlamaModel;
  try {
    model = await LlamaModel.create(
      backend,
      h.model,
      { get: (name) => data.weights.get(name) },
      {
        regressionOutputs: regression ? info.schema.attributes.length : undefined,
        // the GEMMs it was trained and validated with (bf16 and f32 products differ in the last bits)
        computeType: h.settings.computeType === "bf16" ? "bf16" : "f32",
      },
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
 * Sequences are padded only to a multiple of this many tokens, so that batches of similar lengths share
 * a graph shape. A multiple of the kernels' vector widths (16 floats, GEMM panels of 32): the padded keys'
 * zero attention weights then fall in whole vectors after the real ones, and add exactly nothing, so a
 * sequence's prediction is the same bits at every padded length (tested against a fixed [B, seqLen] shape).
 */
const LENGTH_STEP = 64;

/** One batch shape [B, T]: its inputs and forward graph. */
interface ShapeGraph {
  B: number;
  T: number;
  static: Context;
  buf: Buffer;
  compute: Context;
  graph: Graph;
  inputs: { tokens: Tensor; positions: Tensor; kqMask: Tensor; lastIdx: Tensor };
  out: Tensor;
}

/**
 * Forward-only regression APM. `predict` sorts the sequences by length, runs them longest first in
 * batches of `batchSize`, each padded to its longest (rounded up to LENGTH_STEP), and returns the
 * predictions in the input order. Consecutive batches of one shape share a graph, and one allocator
 * serves every graph: planned for the first, largest batch, its buffer is reused by the smaller ones.
 * Each sequence's prediction is the same bits whatever it is batched with and however it is padded
 * (every reduction over tokens adds the padding's exact zeros last), so annotate's output does not depend
 * on the order or grouping of its input, and a resumed run writes what an uninterrupted one would have.
 * No gradients: the graph has no backward part and the weights get no gradient tensors.
 */
export class ApmPredictor {
  readonly #alloc: GraphAllocator;
  #current: ShapeGraph | undefined;
  readonly outputs: number;

  constructor(
    readonly backend: Backend,
    readonly model: LlamaModel,
    readonly batchSize: number,
    readonly seqLen: number,
    /** Token id the padding holds (masked out: any id gives the same predictions). */
    readonly padId = 0,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new RangeError(`batchSize must be an integer ≥ 1, got ${batchSize}`);
    this.outputs = model.tensor(HEAD_WEIGHT).ne[1]!;
    this.#alloc = backend.newAllocator();
  }

  /**
   * Raw predictions [n·K] (row-major by sequence, in the order given) for token sequences of 1..seqLen
   * tokens each.
   */
  predict(sequences: readonly Int32Array[]): Float32Array {
    const K = this.outputs;
    const out = new Float32Array(sequences.length * K);
    const len = (i: number) => sequences[i]!.length;
    // longest first: the allocator is planned once, for the largest batch
    const order = sequences.map((_, i) => i).sort((a, b) => len(b) - len(a) || a - b);
    for (let i = 0; i < order.length; i += this.batchSize) {
      const idx = order.slice(i, i + this.batchSize);
      const longest = len(idx[0]!);
      if (longest > this.seqLen || len(idx.at(-1)!) < 1)
        throw new RangeError(
          `APM sequences need 1..${this.seqLen} tokens, got one of ${longest > this.seqLen ? longest : 0}`,
        );
      const T = Math.min(this.seqLen, Math.ceil(longest / LENGTH_STEP) * LENGTH_STEP);
      const g = this.#shape(idx.length, T);
      const examples = idx.map((j) => ({ ids: sequences[j]!, targets: new Float32Array(K) }));
      const { batch } = packApmBatch(examples, g.B, T, K, this.padId);
      const p = prepareBatch(batch, g.B, T, this.model.config.vocabSize, K);
      setData(g.inputs.tokens, p.tokens);
      setData(g.inputs.positions, p.positions);
      setData(g.inputs.kqMask, p.kqMask);
      setData(g.inputs.lastIdx, p.lastIdx);
      this.#alloc.alloc(g.graph);
      this.backend.compute(g.graph);
      const pred = getF32(g.out); // [B·K]
      idx.forEach((j, s) => {
        out.set(pred.subarray(s * K, (s + 1) * K), j * K);
      });
    }
    return out;
  }

  /**
   * The graph for [B, T]: the last batch's while the shape stays, else a new one. Only one is kept: a
   * graph allocated before the allocator grew its buffer would still point into the freed one (gallocr
   * places a tensor that has data only once), so a graph is never allocated twice across a regrowth.
   */
  #shape(B: number, T: number): ShapeGraph {
    const kept = this.#current;
    if (kept && kept.B === B && kept.T === T) return kept;
    if (kept) freeShape(kept);
    this.#current = undefined;
    const model = this.model;
    const s = new Context(8);
    const inputs = {
      tokens: s.newTensor("i32", [B * T], "tokens"),
      positions: s.newTensor("i32", [B * T], "positions"),
      kqMask: s.newTensor("f32", [T, T, 1, B], "kq_mask"),
      lastIdx: s.newTensor("i32", [B], "last_idx"),
    };
    const buf = this.backend.allocTensors(s);
    const size = 2048 + model.config.numLayers * 128;
    const c = new Context(size * 2, size, { plainOps: !this.backend.isCpu });
    const attn = {
      positions: inputs.positions,
      kqMask: inputs.kqMask,
      seqLen: T,
      batch: B,
      ropeMode: model.options.ropeMode,
    };
    const { hidden } = buildForward(c, model, inputs.tokens, attn, false); // [D, B·T]
    const out = regressionHead(c, hidden, inputs.lastIdx, model.tensor(HEAD_WEIGHT), model.tensor(HEAD_BIAS)); // [K, B]
    c.setOutput(out);
    const graph = new Graph(c, size);
    graph.expand(out);
    const g = { B, T, static: s, buf, compute: c, graph, inputs, out };
    this.#current = g;
    return g;
  }

  free(): void {
    if (this.#current) freeShape(this.#current);
    this.#current = undefined;
    this.#alloc.free();
  }
}

function freeShape(g: ShapeGraph): void {
  g.compute.free();
  g.buf.free();
  g.static.free();
}
