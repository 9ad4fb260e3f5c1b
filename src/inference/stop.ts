/**
 * Incremental text of a generation with stop strings. Tokens arrive one by one; the text is decoded from
 * all ids so far (so multi-byte characters split across tokens come out whole), and text that could still
 * turn into a stop string is held back until it either completes the stop or cannot.
 */
import { RESPONSE_END } from "../data/template.js";

export class StopText {
  private emitted = 0;
  private text = "";
  /** Set once a stop string has appeared: the final text ends right before it. */
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /**
   * Takes the full decoded text so far; returns the new text that is safe to show. A trailing U+FFFD is
   * an incomplete UTF-8 sequence and is held back until the next token completes it.
   */
  update(fullText: string): string {
    this.text = fullText;
    let end = fullText.length;
    let stopAt = -1;
    for (const s of this.stops) {
      const i = fullText.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.stopped = true;
      this.text = fullText.slice(0, stopAt);
      end = stopAt;
    } else {
      while (end > this.emitted && fullText.charCodeAt(end - 1) === 0xfffd) end--;
      end -= this.partialStopLength(fullText.slice(0, end));
    }
    if (end <= this.emitted) return "";
    const out = fullText.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }

  /** What is left to show once generation ends (held-back text that never became a stop). */
  flush(): string {
    const out = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return out;
  }

  /**
   * What is left to show when generation ended at a stop token that closes the turn: the template writes a
   * turn as `text\n<extra_id_1>`, so a held-back final newline belongs to the turn's end, not to the reply
   * (kept, a reply sent back in the next request would render with two).
   */
  flushTurnEnd(): string {
    const end = RESPONSE_END.lineEnd;
    if (this.text.length > this.emitted && this.text.endsWith(end))
      this.text = this.text.slice(0, -end.length);
    return this.flush();
  }

  get final(): string {
    return this.text;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialStopLength(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

/**
 * Decodes a growing list of ids to text in linear time: only the ids since the last complete character are
 * decoded again (with the ids before them as context, for tokenizers that decide spaces by neighbours).
 * `decode(ids, previous)` is the model's detokenizer; a trailing U+FFFD marks an unfinished character.
 */
export class IncrementalDecoder<T> {
  private committed = "";
  private start = 0;

  constructor(private readonly decode: (ids: T[], previous: T[]) => string) {}

  /** The full text of `ids`, which must extend the list given last time. */
  text(ids: T[]): string {
    const tail = this.decode(ids.slice(this.start), ids.slice(Math.max(0, this.start - 8), this.start));
    const full = this.committed + tail;
    if (!tail.endsWith("\uFFFD")) {
      this.committed = full;
      this.start = ids.length;
    }
    return full;
  }
}
