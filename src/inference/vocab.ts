import { existsSync } from "node:fs";
import { basename } from "node:path";
import { type LlamaModel, type Token, TokenBias } from "node-llama-cpp";
import {
  type AttributeSchema,
  type AttributeValues,
  formatValues,
  parseAttributes,
  withDefaults,
} from "../data/attributes.js";
import {
  CONTROL_TOKEN_NAMES,
  CONTROL_TOKENS,
  type Conversation,
  DEFAULT_SYSTEM_PROMPT,
  joinedSystemPrompt,
  renderConversation,
  type Turn,
} from "../data/template.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import type { GgufFile } from "../gguf/types.js";
import { InputError, type Place } from "../util/errors.js";
import { log } from "../util/log.js";
import { checkNumber } from "../util/numbers.js";
import { CompletionText, ContextLengthError } from "./completion.js";
import {
  type ContrastMode,
  checkContrast,
  checkGuidance,
  planConditionings,
  TooManyConditioningsError,
} from "./mixture.js";
import {
  type ControlVocab,
  detectControlTokens,
  maxBytesPerToken,
  tokenizeParts,
  tokenizeRaw,
} from "./prompt.js";
import { LOGIT_BIAS_RANGE } from "./sampling.js";
import { resolveSchema, type SchemaSource } from "./schema.js";

/**
 * The most tokens per sequence when none is asked for: a KV cache the size of a long training context would
 * take gigabytes per sequence.
 */
export const CONTEXT_SIZE_CAP = 2048;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface PromptInfo {
  text: string;
  tokens: number[];
  /** Control-token ids in `tokens`: depends only on the number of turns (0 when the vocabulary lacks them). */
  controlTokens: number;
  /** The template's parts (chat prompts only): control parts are the only source of control ids. */
  parts?: Array<{ kind: "control" | "text"; text: string }>;
}

/** One conditioning of a mixed prompt: its value string, its weight in the combination, its tokens. */
export interface PromptConditioning {
  values: string;
  weight: number;
  tokens: number[];
}

/** An inference prompt with the attribute values it carries. */
export interface SteerPrompt extends PromptInfo {
  /** Effective attribute values, defaults filled in (fractions as requested). */
  attributes: AttributeValues;
  /** The requested value string (fractions as requested: `humor:2.5`). */
  values: string;
  /**
   * With fractional values or guidance: every conditioning combined at each step (mixture.ts), the first
   * being the prompt above. Absent for a plain prompt.
   */
  conditionings?: PromptConditioning[];
}

/** What a prompt is made from: messages or a conversation, at attribute values. */
export interface PromptSource {
  /** OpenAI-style messages; system messages join into the system prompt (default: SteerLM's). */
  messages?: readonly ChatMessage[];
  /** Or a conversation as the template takes it; must end with a user turn. */
  conversation?: Conversation;
  /**
   * Attribute values (an object of name -> number, or a value string `humor=3,verbosity=1`); unspecified
   * ones take the schema defaults. Fractions (`humor: 2.5`) mix the neighbouring integer conditionings.
   */
  attributes?: AttributeValues | string;
  /** Attribute guidance strength (mixture.ts, GUIDANCE); default 0: none. */
  guidance?: number;
  /** What guidance pushes away from; default DEFAULT_CONTRAST (`defaults`). */
  contrast?: ContrastMode;
}

/** How a prompt may be rendered: `admit` sees each text before it is tokenized (and may refuse it). */
export interface RenderOptions {
  admit?: (text: string) => void;
  /**
   * Conditionings one generation can combine (fractional values, guidance); undefined: the generator
   * samples from one conditioning only (a remote engine), so a prompt that needs more is refused.
   */
  conditionings?: number;
}

/**
 * The token side of a SteerLM model: its schema, how its vocabulary spells the control tokens, the
 * inference prompt as ids and generated ids back to text. Built on a loaded model (`of`), or on the
 * vocabulary alone (`load`) when the tokens are generated elsewhere, by a remote engine.
 */
export interface VocabOptions {
  /**
   * Built-in schema name, schema file or schema; default: the LoRA adapter's `steerlm.schema`, else the
   * GGUF's, else `steerlm`.
   */
  schema?: string | AttributeSchema;
  /** The LoRA adapter applied to the model, read by steerlm's GGUF reader (for its schema). */
  adapter?: GgufFile;
  /**
   * Refuse a model whose vocabulary lacks the SteerLM control tokens (served as text, a user message could
   * forge a whole turn with its own value line). Default false; `steerlm serve` beyond loopback sets it.
   */
  requireControlTokens?: boolean;
}

export class SteerVocab {
  private constructor(
    private readonly model: LlamaModel,
    private readonly control: ControlVocab,
    /** See maxBytesPerToken; undefined when the tokenizer gives no such bound. */
    private readonly bytesPerToken: number | undefined,
    readonly modelPath: string,
    readonly schema: AttributeSchema,
    readonly schemaSource: SchemaSource,
  ) {}

  /** The vocabulary of a model loaded by `openLlamaModel`, with the schema it steers with. */
  static of(opened: OpenedModel, modelPath: string, opts: VocabOptions = {}): SteerVocab {
    const { model, file } = opened;
    const resolved = resolveSchema(model, modelPath, opts.schema, opts.adapter);
    const control = detectControlTokens(model, modelPath);
    if (control.mode === "text" && opts.requireControlTokens) {
      throw new InputError(
        `the vocabulary has no SteerLM control tokens (${CONTROL_TOKEN_NAMES.join(", ")}): as plain ` +
          "text they let a user message forge a whole turn, value line included",
        { file: modelPath, setting: "requireControlTokens" },
        "serve a model made by steerlm sft (its vocabulary has them), or turn the requirement off",
      );
    }
    if (control.mode === "text") {
      log.warn(
        `${modelPath}: the vocabulary has no SteerLM control tokens; they are sent as plain text ` +
          `and generation stops at the text ${CONTROL_TOKENS.turn}`,
      );
    }
    return new SteerVocab(
      model,
      control,
      maxBytesPerToken(file),
      modelPath,
      resolved.schema,
      resolved.source,
    );
  }

  /** Only the vocabulary of a GGUF (no weights are read): for prompts whose tokens an engine generates. */
  static async load(modelPath: string, opts: VocabOptions = {}): Promise<SteerVocab> {
    const opened = await openLlamaModel(modelPath, { vocabOnly: true });
    try {
      return SteerVocab.of(opened, modelPath, opts);
    } catch (err) {
      await opened.model.dispose();
      throw err;
    }
  }

  /**
   * Refuses, before it is tokenized, a prompt text too long for `contextSize` at any tokenization:
   * tokenizing is the work a request does before it waits for a slot, on the event loop.
   */
  checkLength(text: string, contextSize: number): void {
    const perToken = this.bytesPerToken;
    if (perToken === undefined) return;
    // Every character is at least one UTF-8 byte: a huge text is refused by its length alone, without a
    // pass over it (a flattening copy of a 1 MB prompt costs milliseconds); a shorter one is counted.
    const byLength = Math.ceil(text.length / perToken);
    const atLeast = byLength >= contextSize ? byLength : Math.ceil(Buffer.byteLength(text) / perToken);
    if (atLeast >= contextSize) throw new ContextLengthError(atLeast, undefined, contextSize, text.length);
  }

  /** A short id for the model (its file name without .gguf). */
  get id(): string {
    return basename(this.modelPath).replace(/\.gguf$/i, "");
  }

  get controlMode(): ControlVocab["mode"] {
    return this.control.mode;
  }

  /** The ids of `<extra_id_0/1/2>` (none in `text` mode). */
  get controlIds(): number[] {
    return [...this.control.ids.values()];
  }

  /** Entries in the vocabulary: valid ids are 0 .. size - 1. */
  get size(): number {
    return this.model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
  }

  /** Tokens per sequence when none is asked for: the model's training context, at most CONTEXT_SIZE_CAP. */
  get defaultContextSize(): number {
    const trained = this.model.trainContextSize || this.model.fileInsights.trainContextSize;
    return Math.min(trained || CONTEXT_SIZE_CAP, CONTEXT_SIZE_CAP);
  }

  /**
   * The SteerLM inference prompt for a conversation at the given attribute values; with fractional values
   * or guidance, also every conditioning the generation combines (mixture.ts).
   */
  renderPrompt(opts: PromptSource, render: RenderOptions = {}): SteerPrompt {
    const place = { field: "attributes" };
    const given = parseAttributes(this.schema, opts.attributes ?? {}, place, { fractions: true });
    const attributes = withDefaults(this.schema, given, place, { fractions: true });
    const guidance = checkGuidance(opts.guidance) ?? 0;
    const plan = planConditionings(
      this.schema,
      attributes,
      Object.keys(given),
      guidance,
      checkContrast(opts.contrast),
    );
    // Refused whenever asked for, even where the plan has one conditioning (guidance with nothing to
    // contrast): the rule a user of an engine reads is then "local only", not one that depends on values.
    if (render.conditionings === undefined && (guidance !== 0 || plan.length > 1)) {
      const setting = guidance !== 0 ? "guidance" : "attributes";
      throw new InputError(
        guidance !== 0
          ? "attribute guidance mixes conditionings at each token, which a remote engine does not sample from"
          : `a fractional attribute value mixes ${plan.length} conditionings at each token, which a remote ` +
              "engine does not sample from",
        { setting },
        "generate with the local model (no --backend / --upstream), or use integer values without guidance",
      );
    }
    if (render.conditionings !== undefined && plan.length > render.conditionings && plan.length > 1)
      throw new TooManyConditioningsError(plan.length, render.conditionings, { setting: "attributes" });
    const one = (values: string) => {
      const conv = opts.conversation ?? messagesToConversation(opts.messages ?? [], values);
      const rendered = renderConversation(conv, "inference", { values });
      render.admit?.(rendered.text);
      const { tokens, controlTokens } = tokenizeParts(this.model, this.control, rendered.parts);
      const parts = rendered.parts.map(({ kind, text }) => ({ kind, text }));
      return { text: rendered.text, tokens, controlTokens, parts };
    };
    const conditionings = plan.map((c) => {
      const values = formatValues(this.schema, c.attributes);
      return { values, weight: c.weight, rendered: one(values) };
    });
    const main = (conditionings[0] as (typeof conditionings)[number]).rendered;
    const values = formatValues(this.schema, attributes, { fractions: true });
    if (conditionings.length === 1) return { ...main, attributes, values };
    return {
      ...main,
      attributes,
      values,
      conditionings: conditionings.map((c) => ({
        values: c.values,
        weight: c.weight,
        tokens: c.rendered.tokens,
      })),
    };
  }

  /** A raw prompt, no template: BOS if the model wants one, then the text (special-token strings parsed on request). */
  rawPrompt(text: string, specialTokens: boolean, admit?: (text: string) => void): PromptInfo {
    admit?.(text);
    const tokens = tokenizeRaw(this.model, text, specialTokens);
    return { text, tokens, controlTokens: this.countControl(tokens) };
  }

  /** A prompt given as ids, taken as they are (no BOS added); each must be in the vocabulary. */
  tokenPrompt(ids: readonly number[]): PromptInfo {
    for (const [i, id] of ids.entries()) this.checkId(id, { field: `prompt[${i}]` });
    return {
      text: this.model.detokenize(ids as Token[], true),
      tokens: [...ids],
      controlTokens: this.countControl(ids),
    };
  }

  /** Each id of a logit bias must be in the vocabulary, each bias in -100..100. */
  checkLogitBias(bias: ReadonlyMap<number, number>): void {
    for (const [id, logit] of bias) {
      const place = { setting: "logitBias", field: String(id) };
      this.checkId(id, place);
      checkNumber(logit, LOGIT_BIAS_RANGE, place);
    }
  }

  /** node-llama-cpp's form of a logit bias (checked first). */
  tokenBias(bias: ReadonlyMap<number, number>): TokenBias {
    this.checkLogitBias(bias);
    const out = new TokenBias(this.model.tokenizer);
    for (const [id, logit] of bias) out.set(id as Token, { logit });
    return out;
  }

  private checkId(id: number, place: Place): void {
    checkNumber(id, { integer: true, min: 0, max: this.size - 1 }, place);
  }

  /** Ids back to text (special tokens dropped), as generation decodes them. */
  decode(tokens: readonly number[]): string {
    return this.model.detokenize(tokens as Token[], false);
  }

  /** The text of a completion, fed its ids as they are generated (see CompletionText). */
  completionText(
    stop: readonly string[],
    maxTokens: number,
    onText?: (text: string) => void,
  ): CompletionText {
    const stopIds = new Set<number>(this.control.ids.values());
    const vocab = {
      isStop: (id: number) => stopIds.has(id) || this.model.isEogToken(id as Token),
      detokenize: (ids: readonly number[], previous: readonly number[]) =>
        this.model.detokenize(ids as Token[], false, previous as Token[]),
    };
    return new CompletionText(vocab, stop, maxTokens, onText);
  }

  private countControl(tokens: readonly number[]): number {
    const control = new Set<number>(this.control.ids.values());
    return tokens.filter((t) => control.has(t)).length;
  }

  /** Frees the model when it was loaded by `load` (the vocabulary alone). */
  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

export type OpenedModel = Awaited<ReturnType<typeof loadLlamaModel>>;

/** A GGUF loaded by llama.cpp (on the GPU when steerlm runs with one), or only its vocabulary. */
export async function openLlamaModel(
  modelPath: string,
  opts: { vocabOnly?: boolean } = {},
): Promise<OpenedModel> {
  if (!existsSync(modelPath)) throw new InputError("no such file", { file: modelPath, field: "model" });
  return loadLlamaModel(modelPath, opts.vocabOnly ? { vocabOnly: true, gpuLayers: 0 } : {});
}

/**
 * OpenAI-style messages -> a template conversation. System messages join into the system prompt;
 * earlier assistant turns carry the same value string as the turn to generate, as SteerLM's multi-turn
 * training data labels every assistant turn.
 */
export function messagesToConversation(messages: readonly ChatMessage[], values: string): Conversation {
  const turns: Turn[] = [];
  for (const [i, m] of messages.entries()) {
    if (m.role === "system") continue;
    if (m.role === "user") turns.push({ role: "user", text: m.content });
    else if (m.role === "assistant") turns.push({ role: "assistant", text: m.content, values });
    else throw new InputError(`unknown role ${JSON.stringify(m.role)}`, { field: `messages[${i}].role` });
  }
  if (turns.length === 0) throw new InputError("no user message", { field: "messages" });
  return { system: joinedSystemPrompt(messages) ?? DEFAULT_SYSTEM_PROMPT, turns };
}
