import { CONTROL_TOKEN_NAMES, type ControlToken, isControlToken } from "../data/template.js";
import { SteerlmError } from "../util/errors.js";

export { CONTROL_TOKEN_NAMES, type ControlToken, isControlToken };

/**
 * One interface for every tokenizer path (a Hugging Face tokenizer.json, a GGUF vocabulary through llama.cpp).
 *
 * Security contract: `encode` treats its input as plain text, always. Text that spells a control token
 * (`<extra_id_2>helpfulness:0` in a user message) becomes ordinary pieces, never the control id. The only way
 * to get a control id is `encodeControl`, which only the template layer calls (through `encodeParts`).
 */
export interface Tokenizer {
  /** Where the vocabulary came from: "hf" (tokenizer.json) or "gguf" (llama.cpp's tokenizer). */
  readonly kind: "hf" | "gguf";
  /** Number of ids, added tokens included (ids are 0 .. vocabSize-1). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Plain text to ids: no BOS/EOS, special-token strings are never matched. */
  encode(text: string): number[];
  /**
   * Plain text that directly continues earlier text: like `encode`, but without the dummy-prefix space
   * SentencePiece-style vocabularies put at the start of a text (byte-level BPE adds none, so the same).
   */
  encodeContinuation(text: string): number[];
  /** The id of one SteerLM control token; throws SteerlmError when the vocabulary lacks it. */
  encodeControl(name: ControlToken): number;
  /** Whether all three control tokens exist as single ids. */
  hasControlTokens(): boolean;
  /** Ids back to text; control and other special tokens are rendered as their text. */
  decode(ids: readonly number[]): string;
  /** The vocabulary entry of one id as stored (e.g. "Ġworld" for byte-level BPE, "▁world" for SentencePiece). */
  idToPiece(id: number): string;
  /** Releases native resources (GGUF path); a no-op for pure-JS tokenizers. */
  dispose(): Promise<void>;
}

/** A piece of a rendered conversation (structurally the template's `TemplatePart`). */
export interface TokenizerPart {
  kind: "text" | "control";
  text: string;
  /** Optional: whether this part's tokens carry loss (used by `encodePartsWithLoss`). */
  loss?: boolean;
}

/**
 * The id batches are padded with: EOS's (padding is out of the attention and the loss, so any id serves;
 * one the model knows keeps embeddings finite), 0 where the vocabulary has none.
 */
export function padTokenId(t: Pick<Tokenizer, "eosId">): number {
  return t.eosId ?? 0;
}

/**
 * Tokenizes a rendered conversation part by part: text parts as plain text, control parts by id. This is
 * what makes injection impossible: a control id can only come from a control part, which only the
 * template creates.
 */
export function encodeParts(tokenizer: Tokenizer, parts: readonly TokenizerPart[]): number[] {
  return encodePartsWithLoss(tokenizer, parts).ids;
}

/** Like `encodeParts`, plus a 0/1 loss mask (one entry per id) from each part's `loss` flag. */
export function encodePartsWithLoss(
  tokenizer: Tokenizer,
  parts: readonly TokenizerPart[],
): { ids: number[]; loss: Uint8Array } {
  const ids: number[] = [];
  const mask: number[] = [];
  let previous: TokenizerPart["kind"] | undefined;
  for (const part of parts) {
    let partIds: number[];
    if (part.kind === "control") {
      if (!isControlToken(part.text)) {
        throw new SteerlmError(
          `template part of kind "control" holds ${JSON.stringify(part.text)}, which is not a SteerLM control token`,
          `control parts must be one of ${CONTROL_TOKEN_NAMES.join(", ")}`,
        );
      }
      partIds = [tokenizer.encodeControl(part.text)];
    } else {
      // Text split only at a loss boundary continues the text before it: a SentencePiece vocabulary must not
      // get a second dummy-prefix space there, or training ids would differ from llama.cpp's tokenization
      // of the whole prompt (which adds the prefix only at the start and after a control token).
      partIds = previous === "text" ? tokenizer.encodeContinuation(part.text) : tokenizer.encode(part.text);
    }
    previous = part.kind;
    for (const id of partIds) {
      ids.push(id);
      mask.push(part.loss ? 1 : 0);
    }
  }
  return { ids, loss: Uint8Array.from(mask) };
}

export function missingControlToken(name: ControlToken, source: string): SteerlmError {
  return new SteerlmError(
    `${source}: the vocabulary has no single token ${name}`,
    "add them with addControlTokens() (tokenizers trained by trainByteLevelBpe already have them)",
  );
}

/** The SteerLM control tokens a vocabulary holds as single ids, by name (shared by every Tokenizer). */
export class ControlTokenIds implements Iterable<[ControlToken, number]> {
  readonly #ids = new Map<ControlToken, number>();

  /** `source` names the vocabulary in errors. */
  constructor(private readonly source: string) {}

  set(name: ControlToken, id: number): void {
    this.#ids.set(name, id);
  }

  /** The id of a control token; a vocabulary without it is an error naming the source. */
  id(name: ControlToken): number {
    const id = this.#ids.get(name);
    if (id === undefined) throw missingControlToken(name, this.source);
    return id;
  }

  /** Whether every one of CONTROL_TOKEN_NAMES is present. */
  get complete(): boolean {
    return this.#ids.size === CONTROL_TOKEN_NAMES.length;
  }

  [Symbol.iterator](): Iterator<[ControlToken, number]> {
    return this.#ids[Symbol.iterator]();
  }
}
