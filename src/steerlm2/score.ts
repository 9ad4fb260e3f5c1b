import type { AttributeSchema } from "../data/attributes.js";
import type { DataRecord } from "../data/record.js";
import { CONTROL_TOKEN_NAMES } from "../data/template.js";
import { Backend } from "../ggml/backend.js";
import { readGguf } from "../gguf/reader.js";
import { ggufAddsBos } from "../gguf/vocab.js";
import { forwardLogits, logSumExpRow } from "../model/infer.js";
import { loadLlamaGguf } from "../model/load.js";
import type { LlamaModel } from "../model/model.js";
import { encodeRecords } from "../run/data.js";
import { loadGgufTokenizer } from "../tokenizer/gguf.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { predictsLabel } from "../train/batch.js";
import { readFailure } from "../util/errno.js";
import { InputError } from "../util/errors.js";

/**
 * Log-likelihoods of records under a GGUF model in the engine (not llama.cpp): the sum of log p(token)
 * over exactly the tokens `steerlm sft` trains for that record (each response, its line end and turn
 * terminator), with the same template, tokenizer, BOS and labels (src/run/data.ts `encodeRecords`), so
 * that SteerLM 2.0 training can compare these numbers with its own model's log-probabilities.
 *
 * A record is never truncated: the whole conversation is evaluated in one forward pass of its own
 * (no padding, so the result does not depend on what else is scored).
 */

/** Longer conversations are refused rather than scored in part. */
const NO_TRUNCATION = 1 << 20;

export class GgufScorer {
  private constructor(
    readonly path: string,
    private readonly backend: Backend,
    private readonly model: LlamaModel,
    private readonly tokenizer: Tokenizer,
    /** BOS first, as `steerlm sft` does when the GGUF asks for one. */
    readonly bos: number | null,
  ) {}

  /** `setting` names the option the file came from, for errors (`model`, `prior`). */
  static async load(path: string, setting: string, threads?: number): Promise<GgufScorer> {
    let file: Awaited<ReturnType<typeof readGguf>>;
    try {
      file = await readGguf(path);
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw readFailure(err, path, "cannot read the GGUF");
    }
    const tokenizer = await loadGgufTokenizer(path);
    if (!tokenizer.hasControlTokens()) {
      // Checked here, before any sampling: the SFT template cannot be tokenized without them.
      await tokenizer.dispose();
      throw new InputError(
        `the vocabulary has no SteerLM control tokens (${CONTROL_TOKEN_NAMES.join(", ")})`,
        { file: path, setting },
        "log-likelihoods are taken under the SteerLM template: use a SteerLM model (e.g. a `steerlm export gguf` of an SFT run)",
      );
    }
    const bos = ggufAddsBos(file) ? tokenizer.bosId : null;
    const backend = new Backend(threads);
    try {
      const { model } = await loadLlamaGguf(backend, path);
      return new GgufScorer(path, backend, model, tokenizer, bos ?? null);
    } catch (err) {
      backend.free();
      await tokenizer.dispose();
      throw err;
    }
  }

  /**
   * log p of the record's trained tokens (sum) and how many there are. `schema` orders the value strings
   * of labelled turns, as `steerlm sft` renders them with the model's schema.
   */
  score(record: DataRecord, schema: AttributeSchema): { logProb: number; tokens: number } {
    const enc = encodeRecords([record], {
      tokenizer: this.tokenizer,
      bos: this.bos,
      schema,
      seqLen: NO_TRUNCATION,
    });
    const ex = enc.examples[0];
    if (!ex) throw new InputError("the record has no trained token", { file: record.origin?.file });
    const V = this.model.config.vocabSize;
    const logits = forwardLogits(this.backend, this.model, Array.from(ex.ids));
    let sum = 0;
    let tokens = 0;
    // the positions the trainer's loss reads (every token of one unpadded sequence is real)
    const real = new Uint8Array(ex.ids.length).fill(1);
    for (let t = 0; t + 1 < ex.ids.length; t++) {
      if (!predictsLabel(ex.labels, real, t)) continue;
      sum += logits[t * V + ex.labels[t + 1]!]! - logSumExpRow(logits, t, V);
      tokens++;
    }
    return { logProb: sum, tokens };
  }

  async free(): Promise<void> {
    this.model.free();
    this.backend.free();
    await this.tokenizer.dispose();
  }
}
