import { existsSync } from "node:fs";
import type { LlamaModel, Token } from "node-llama-cpp";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { InputError, SteerlmError } from "../util/errors.js";
import { llamaControlTokenIds } from "./control.js";
import { type ControlToken, ControlTokenIds, type Tokenizer } from "./types.js";

/**
 * A GGUF file's own vocabulary, tokenized by llama.cpp through node-llama-cpp (the model is opened
 * vocab-only: no weights are read). Plain text is tokenized with `parse_special = false`, so control-token
 * strings in it stay text. llama.cpp still matches *user-defined* added tokens then; a control token marked
 * that way in a file would be an injection hole, so `encode` refuses any output holding a control id.
 */
export class GgufTokenizer implements Tokenizer {
  readonly kind = "gguf" as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  private readonly pieces: readonly string[];
  private readonly controlIds: ControlTokenIds;

  constructor(
    private readonly model: LlamaModel,
    readonly source: string,
  ) {
    const tokens = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
    if (!Array.isArray(tokens) || tokens.length === 0)
      throw new InputError("the GGUF has no tokenizer.ggml.tokens array", { file: source });
    this.pieces = tokens as string[];
    this.controlIds = new ControlTokenIds(source);
    this.vocabSize = this.pieces.length;
    this.bosId = model.tokens.bos;
    this.eosId = model.tokens.eos;
    for (const [name, id] of llamaControlTokenIds(model)) this.controlIds.set(name, id);
  }

  encode(text: string): number[] {
    if (text === "") return [];
    return this.guard(Array.from(this.model.tokenize(text, false), Number));
  }

  encodeContinuation(text: string): number[] {
    if (text === "") return [];
    // node-llama-cpp's "trimLeadingSpace": tokenizes "\n" + text and drops the "\n" tokens when that is
    // unambiguous, so no dummy-prefix space is added (no-op for byte-level vocabularies).
    return this.guard(Array.from(this.model.tokenize(text, false, "trimLeadingSpace"), Number));
  }

  private guard(ids: number[]): number[] {
    for (const id of ids) {
      for (const [name, controlId] of this.controlIds) {
        if (id === controlId)
          throw new SteerlmError(
            `${this.source}: plain text tokenized to the control token ${name} (id ${id})`,
            "the GGUF marks this control token as user-defined; it must have token type 3 (control)",
          );
      }
    }
    return ids;
  }

  encodeControl(name: ControlToken): number {
    return this.controlIds.id(name);
  }

  hasControlTokens(): boolean {
    return this.controlIds.complete;
  }

  decode(ids: readonly number[]): string {
    return this.model.detokenize(ids as readonly Token[], true);
  }

  idToPiece(id: number): string {
    const piece = this.pieces[id];
    if (piece === undefined) throw new SteerlmError(`${this.source}: no token with id ${id}`);
    return piece;
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

/** Opens a GGUF vocab-only through the shared node-llama-cpp runtime. */
export async function loadGgufTokenizer(path: string): Promise<GgufTokenizer> {
  if (!existsSync(path)) throw new InputError("no such file", { file: path });
  const { model } = await loadLlamaModel(path, { vocabOnly: true, gpuLayers: 0 });
  try {
    return new GgufTokenizer(model, path);
  } catch (err) {
    await model.dispose();
    throw err;
  }
}
