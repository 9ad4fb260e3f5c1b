import { describe, expect, it } from "vitest";
import { CompletionText } from "./completion.js";

/** A vocabulary of single pieces by id; id 0 is the turn's stop id (`<extra_id_1>`). */
const PIECES = ["", "Hello", "\n", " world", "a", "b"];
const vocab = {
  isStop: (id: number) => id === 0,
  detokenize: (ids: readonly number[]) => ids.map((id) => PIECES[id]).join(""),
};

function run(ids: number[], maxTokens = 16): { text: string; shown: string[]; finish: string } {
  const shown: string[] = [];
  const c = new CompletionText(vocab, [], maxTokens, (t) => shown.push(t));
  for (const id of ids) if (!c.push(id)) break;
  const text = c.finish();
  return { text, shown, finish: c.finishReason };
}

describe("CompletionText", () => {
  it("leaves out the newline the template puts before the turn's stop id, streamed or not", () => {
    // the model writes a turn as `text\n<extra_id_1>`: sent back, the reply renders that once again
    expect(run([1, 2, 0])).toEqual({ text: "Hello", shown: ["Hello"], finish: "stop" });
    // a newline inside the reply waits for the next id, then shows
    expect(run([1, 2, 3, 0])).toEqual({
      text: "Hello\n world",
      shown: ["Hello", "\n world"],
      finish: "stop",
    });
    // two newlines: one is the reply's
    expect(run([4, 2, 2, 0]).text).toBe("a\n");
  });

  it("keeps a final newline where the turn did not end (length) and where a stop string cut the text", () => {
    expect(run([1, 2], 2)).toEqual({ text: "Hello\n", shown: ["Hello", "\n"], finish: "length" });
    const c = new CompletionText(vocab, ["b"], 16);
    for (const id of [4, 2, 5]) c.push(id);
    expect(c.finish()).toBe("a\n");
  });

  it("an engine's ids end the turn where it stopped; its text is final (it cut its own stop strings)", () => {
    const ids = new CompletionText(vocab, [], 16);
    for (const id of [1, 2]) ids.push(id);
    ids.endAs("stop"); // at the stop id it did not send back
    expect(ids.finish()).toBe("Hello");
    const spelled = new CompletionText(vocab, [], 16);
    spelled.pushText("Hello\n<extra_id_1>User");
    expect(spelled.finish()).toBe("Hello");
    // stopped at one of the caller's stop strings, which the engine cut: the newline is the reply's
    const text = new CompletionText(vocab, ["b"], 16);
    text.pushText("Hello\n");
    text.endAs("stop");
    expect(text.finish()).toBe("Hello\n");
    const cut = new CompletionText(vocab, [], 16);
    for (const id of [1, 2]) cut.push(id);
    cut.endAs("length");
    expect(cut.finish()).toBe("Hello\n");
  });
});
