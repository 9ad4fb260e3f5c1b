import { CONTROL_TOKENS, RESPONSE_END } from "../data/template.js";
import { InputError } from "../util/errors.js";
import { checkSampling, SAMPLING_SETTINGS, type SamplingValues } from "./sampling.js";
import { IncrementalDecoder, StopText } from "./stop.js";

/**
 * The rules every generator shares, wherever the tokens are sampled (here, or on a remote engine): how
 * many tokens a completion may have, which temperature the sampling options mean, and how the generated
 * ids become the text callers see. Keeping them in one place is what makes a remote completion
 * byte-identical to a local one.
 */

/** `stop`: a stop token or string; `length`: maxTokens reached; `abort`: the signal fired. */
export type FinishReason = "stop" | "length" | "abort";

/** When maxTokens is unset: as many as fit in the context, at most this many. */
export const DEFAULT_MAX_TOKENS = 256;

/**
 * The prompt and the requested completion do not fit in a sequence's context. `maxTokens` undefined: none
 * was asked for, the prompt leaves no room for one token. With `promptCharacters`, the prompt was refused
 * before tokenizing: `promptTokens` is then the least it can have.
 */
export class ContextLengthError extends InputError {
  override name = "ContextLengthError";
  constructor(
    readonly promptTokens: number,
    readonly maxTokens: number | undefined,
    readonly contextSize: number,
    readonly promptCharacters?: number,
  ) {
    super(
      promptCharacters !== undefined
        ? `the prompt (${count(promptCharacters)} characters, at least ${count(promptTokens)} tokens) does not fit in the context of ${contextSize} tokens`
        : maxTokens === undefined
          ? `the prompt (${promptTokens} tokens) leaves no room in the context of ${contextSize} tokens`
          : `the prompt (${promptTokens} tokens) plus max_tokens (${maxTokens}) exceeds the context of ${contextSize} tokens`,
      promptCharacters === undefined && maxTokens !== undefined ? { setting: "maxTokens" } : {},
      promptCharacters === undefined && maxTokens !== undefined
        ? "shorten the conversation or lower max_tokens"
        : "shorten the prompt",
    );
  }
}

const count = (n: number) => n.toLocaleString("en-US");

/**
 * The most tokens a completion of a `promptTokens`-token prompt may have, with the sampling options
 * checked: `maxTokens`, or as many as fit (at most `maxTokensDefault`, default 256). Throws
 * ContextLengthError when they do not fit; the first generated token needs a free cell too, even when
 * maxTokens is 0.
 */
export function completionBudget(
  promptTokens: number,
  contextSize: number,
  opts: SamplingValues & { maxTokensDefault?: number },
): number {
  const room = contextSize - promptTokens;
  const maxTokens =
    opts.maxTokens ?? Math.max(0, Math.min(opts.maxTokensDefault ?? DEFAULT_MAX_TOKENS, room));
  checkSampling(opts);
  if (room < 1 || maxTokens > room)
    throw new ContextLengthError(
      promptTokens,
      opts.maxTokens === undefined ? undefined : maxTokens,
      contextSize,
    );
  return maxTokens;
}

/** The temperature sampling runs at: top_p 0 keeps one token, so it is greedy whatever the temperature. */
export function samplingTemperature(opts: Pick<SamplingValues, "temperature" | "topP">): number {
  return opts.topP === 0 ? 0 : (opts.temperature ?? SAMPLING_SETTINGS.temperature.default);
}

/** What a completion's text needs from the model's vocabulary. */
export interface TextVocab {
  /** A control token or an end-of-generation token: generation ends before it. */
  isStop(id: number): boolean;
  /** The model's detokenizer (special tokens dropped); `previous` gives context for leading spaces. */
  detokenize(ids: readonly number[], previous: readonly number[]): string;
}

/**
 * Generated ids -> the text generation shows, one id at a time: it ends at a stop id (not kept, nor the
 * newline the template puts before it), at a stop string (`<extra_id_1>` always, then the caller's; cut
 * from the text) or after `maxTokens` ids. New text goes to `onText` as soon as it cannot turn into a stop
 * string any more; a final newline waits for the next id, since a stop id would make it the turn's end.
 */
export class CompletionText {
  readonly tokens: number[] = [];
  finishReason: FinishReason = "length";
  private done: boolean;
  /** Ended at a stop id (here, or where the engine stopped): the turn is closed. */
  private turnEnded = false;
  private engineText = "";
  private readonly stopText: StopText;
  private readonly decoder: IncrementalDecoder<number>;

  constructor(
    private readonly vocab: TextVocab,
    stop: readonly string[],
    private readonly maxTokens: number,
    private readonly onText?: (text: string) => void,
  ) {
    this.stopText = new StopText([RESPONSE_END.text, CONTROL_TOKENS.turn, ...stop]);
    this.decoder = new IncrementalDecoder((ids, previous) => vocab.detokenize(ids, previous));
    this.done = maxTokens <= 0;
  }

  /** False once the completion has ended (then further ids are ignored). */
  get open(): boolean {
    return !this.done;
  }

  /** Takes the next generated id; returns `open`. */
  push(id: number): boolean {
    if (this.done) return false;
    if (this.vocab.isStop(id)) {
      if (!this.done) this.turnEnded = true;
      return this.end("stop");
    }
    this.tokens.push(id);
    this.emit(this.stopText.update(this.decoder.text(this.tokens)));
    if (this.stopText.stopped) return this.end("stop");
    if (this.tokens.length >= this.maxTokens) return this.end("length");
    return true;
  }

  /**
   * Takes text an engine decoded itself (one that returns no ids): only the stop strings apply, the
   * engine stopped at the ids and counted the tokens. Returns `open`.
   */
  pushText(piece: string): boolean {
    if (this.done) return false;
    this.engineText += piece;
    this.emit(this.stopText.update(this.engineText));
    if (this.stopText.stopped) return this.end("stop");
    return true;
  }

  /**
   * The generator ended it for `reason` (the engine stopped): "stop" after ids is at a stop id the engine
   * did not send back, which closes the turn; after text, the engine's text is final (an engine cuts its
   * stop strings, the turn's end among them, and may have stopped at one of the caller's). No effect once
   * it has ended.
   */
  endAs(reason: FinishReason): void {
    if (!this.done && reason === "stop" && this.engineText === "") this.turnEnded = true;
    this.end(reason);
  }

  /** Ends it early: the caller gave up. */
  abort(): void {
    this.done = true;
    this.finishReason = "abort";
  }

  /** The final text, after showing whatever was held back for a stop string that never came. */
  finish(): string {
    this.done = true;
    if (!this.stopText.stopped)
      this.emit(this.turnEnded ? this.stopText.flushTurnEnd() : this.stopText.flush());
    return this.stopText.final;
  }

  private end(reason: FinishReason): false {
    if (!this.done) this.finishReason = reason;
    this.done = true;
    return false;
  }

  private emit(piece: string): void {
    if (piece !== "") this.onText?.(piece);
  }
}
