import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { SteerlmError } from "../util/errors.js";
import {
  type HfTokenizerConfig,
  type HfTokenizerJson,
  readJsonFile,
  readSiblingConfig,
  tokenContent,
  validateTokenizerJson,
} from "./hf-json.js";
import {
  CONTROL_TOKEN_NAMES,
  type ControlToken,
  ControlTokenIds,
  isControlToken,
  type Tokenizer,
} from "./types.js";

/** Candidates for BOS/EOS when no tokenizer_config.json names them (first match wins). */
const BOS_GUESSES = ["<|endoftext|>", "<s>", "<|begin_of_text|>", "<bos>"];
const EOS_GUESSES = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"];

/**
 * A Hugging Face tokenizer.json, run by @huggingface/tokenizers (pure JS, synchronous, no native code).
 *
 * The library always matches added tokens in its input, so plain text goes through a second instance built
 * from the same file without the special added tokens (and never with a control token, even one a file
 * marks as non-special): in that instance `<extra_id_2>` is just characters. This mirrors llama.cpp's
 * `parse_special = false`, which skips control tokens but still matches user-defined ones. Truncation and
 * padding settings in the file are ignored: callers decide lengths.
 */
export class HfTokenizer implements Tokenizer {
  readonly kind = "hf" as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Whether the model expects a BOS at the start of a sequence (tokenizer_config's add_bos_token). */
  readonly addBos: boolean;
  private fullInstance: JsTokenizer | undefined;
  private readonly plain: JsTokenizer;
  /** Piece -> id over the model vocabulary and the added tokens. */
  private readonly ids: ReadonlyMap<string, number>;
  private readonly controlIds: ControlTokenIds;
  /** Ids that plain text must never yield: every special added token and every control token. */
  private readonly forbidden = new Set<number>();

  readonly json: HfTokenizerJson;

  constructor(
    json: HfTokenizerJson,
    readonly config: HfTokenizerConfig = {},
    readonly source = "tokenizer.json",
  ) {
    // Checked here too, so an object from anywhere (a checkpoint, JSON.parse) fails with a place, not a crash.
    this.json = json = validateTokenizerJson(json, source);
    this.controlIds = new ControlTokenIds(source);
    const plainAdded = json.added_tokens.filter((t) => !t.special && !isControlToken(t.content));
    this.plain = new JsTokenizer({ ...json, added_tokens: plainAdded }, config);

    // Ids straight from the file, so the second (decoding) instance is only built when needed.
    const ids = new Map<string, number>();
    const vocab = json.model.vocab;
    if (Array.isArray(vocab)) {
      // Unigram: [piece, score] pairs, the id is the position.
      for (let id = 0; id < vocab.length; id++) ids.set((vocab[id] as [string, number])[0], id);
    } else if (vocab && typeof vocab === "object") {
      for (const [p, id] of Object.entries(vocab)) ids.set(p, id as number);
    }
    for (const t of json.added_tokens) ids.set(t.content, t.id);
    this.ids = ids;

    for (const t of json.added_tokens) {
      if (t.special || isControlToken(t.content)) this.forbidden.add(t.id);
    }
    for (const name of CONTROL_TOKEN_NAMES) {
      const id = ids.get(name);
      if (id === undefined) continue;
      this.controlIds.set(name, id);
      this.forbidden.add(id);
    }
    let maxId = -1;
    for (const id of ids.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.bosId = this.findSpecial(tokenContent(config.bos_token), BOS_GUESSES);
    this.eosId = this.findSpecial(tokenContent(config.eos_token), EOS_GUESSES);
    this.addBos = hfAddsBos(json, config);
  }

  /** The complete tokenizer (special tokens included), for decoding. */
  private get full(): JsTokenizer {
    this.fullInstance ??= new JsTokenizer(this.json, this.config);
    return this.fullInstance;
  }

  private findSpecial(named: string | undefined, guesses: string[]): number | null {
    for (const content of named !== undefined ? [named] : guesses) {
      const id = this.ids.get(content);
      if (id !== undefined) return id;
    }
    return null;
  }

  encode(text: string): number[] {
    if (text === "") return [];
    const ids = this.plain.encode(text, { add_special_tokens: false }).ids;
    // Defence in depth: a vocabulary may also hold a control string as an ordinary piece that the model
    // could assemble from plain text. Never let such an id through.
    for (const id of ids) {
      if (this.forbidden.has(id)) {
        throw new SteerlmError(
          `${this.source}: plain text tokenized to the special token ${JSON.stringify(this.idToPiece(id))} (id ${id})`,
          "this vocabulary can spell a special token from ordinary pieces; it cannot be used safely",
        );
      }
    }
    return ids;
  }

  encodeContinuation(text: string): number[] {
    if (text === "" || !this.addsDummyPrefix()) return this.encode(text);
    // Same trick as node-llama-cpp's trimLeadingSpace: "\n" starts the text (so the prefix goes there)
    // and its tokens are dropped, when they come out unchanged at the front.
    const nl = this.encode("\n");
    const ids = this.encode(`\n${text}`);
    if (nl.length > 0 && nl.every((id, i) => ids[i] === id)) return ids.slice(nl.length);
    return this.encode(text);
  }

  private dummyPrefix: boolean | undefined;
  /** Whether encode() puts a SentencePiece "▁" before the text (Metaspace / Prepend normalizer). */
  private addsDummyPrefix(): boolean {
    if (this.dummyPrefix === undefined) {
      const pieces = this.plain.encode("a", { add_special_tokens: false }).tokens;
      this.dummyPrefix = pieces.length > 0 && pieces[0].startsWith("\u2581");
    }
    return this.dummyPrefix === true;
  }

  encodeControl(name: ControlToken): number {
    return this.controlIds.id(name);
  }

  hasControlTokens(): boolean {
    return this.controlIds.complete;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return "";
    return this.full.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  idToPiece(id: number): string {
    const piece = this.full.id_to_token(id);
    if (piece === undefined) throw new SteerlmError(`${this.source}: no token with id ${id}`);
    return piece;
  }

  async dispose(): Promise<void> {}
}

/**
 * Whether a Hugging Face tokenizer starts a sequence with BOS: tokenizer_config's add_bos_token, else its
 * post-processor (as transformers encodes with special tokens).
 */
export function hfAddsBos(json: { post_processor?: unknown }, config: HfTokenizerConfig): boolean {
  return config.add_bos_token ?? templateStartsWithSpecial(json.post_processor);
}

/**
 * Whether the post-processor puts a special token first (Llama-3's TemplateProcessing adds
 * <|begin_of_text|> this way, with no add_bos_token in tokenizer_config.json).
 */
function templateStartsWithSpecial(post: unknown): boolean {
  const p = post as { type?: string; single?: Array<Record<string, unknown>>; processors?: unknown[] } | null;
  if (p?.type === "Sequence") return (p.processors ?? []).some(templateStartsWithSpecial);
  return p?.type === "TemplateProcessing" && p.single?.[0]?.SpecialToken !== undefined;
}

/** Loads a tokenizer.json (and tokenizer_config.json beside it, when present). */
export function loadHfTokenizer(path: string): HfTokenizer {
  const json = validateTokenizerJson(readJsonFile(path), path);
  return new HfTokenizer(json, readSiblingConfig(path) ?? {}, path);
}
