import { describe, expect, it } from "vitest";
import { IncrementalDecoder, StopText } from "./stop.js";

/** Feeds growing prefixes of `pieces` joined, as the decoder does token by token. */
function feed(stops: string[], pieces: string[]): { shown: string[]; t: StopText } {
  const t = new StopText(stops);
  const shown: string[] = [];
  let full = "";
  for (const p of pieces) {
    full += p;
    shown.push(t.update(full));
    if (t.stopped) break;
  }
  return { shown, t };
}

describe("StopText", () => {
  it("shows text as it comes when no stop string is near", () => {
    const { shown, t } = feed(["<extra_id_1>"], ["Hello", " world"]);
    expect(shown).toEqual(["Hello", " world"]);
    expect(t.stopped).toBe(false);
    expect(t.flush()).toBe("");
  });

  it("holds back a possible stop prefix and cuts the text before a completed stop", () => {
    const { shown, t } = feed(["<extra_id_1>"], ["Hi", " <extra", "_id_", "1>User"]);
    expect(shown).toEqual(["Hi", " ", "", ""]);
    expect(t.stopped).toBe(true);
    expect(t.final).toBe("Hi ");
  });

  it("releases held-back text that turns out not to be a stop", () => {
    const { shown, t } = feed(["<extra_id_1>"], ["a <ex", "tra fun"]);
    expect(shown).toEqual(["a ", "<extra fun"]);
    expect(t.stopped).toBe(false);
  });

  it("stops at the earliest of several stop strings, also inside one piece", () => {
    const { t } = feed(["END", "<extra_id_1>"], ["one two END three <extra_id_1>"]);
    expect(t.final).toBe("one two ");
  });

  it("holds back an incomplete UTF-8 character (U+FFFD) until it completes", () => {
    const t = new StopText([]);
    expect(t.update("caf\uFFFD")).toBe("caf");
    expect(t.update("café")).toBe("é");
  });

  it("flush returns the held-back tail at the end of generation", () => {
    const t = new StopText(["<extra_id_1>"]);
    expect(t.update("x <extra_")).toBe("x ");
    expect(t.flush()).toBe("<extra_");
    expect(t.final).toBe("x <extra_");
  });
});

describe("IncrementalDecoder", () => {
  it("re-decodes only from the last complete character, and matches decoding everything at once", () => {
    // A toy byte-level detokenizer: ids are UTF-8 bytes.
    const calls: number[] = [];
    const decode = (ids: number[]) => {
      calls.push(ids.length);
      return Buffer.from(ids).toString("utf8");
    };
    const bytes = [...Buffer.from("añ中b🙂c")];
    const d = new IncrementalDecoder<number>(decode);
    const seen: string[] = [];
    for (let n = 1; n <= bytes.length; n++) seen.push(d.text(bytes.slice(0, n)));
    expect(seen[seen.length - 1]).toBe("añ中b🙂c");
    expect(seen[2]).toBe("añ"); // 'a', then the two bytes of ñ
    // Never more than one unfinished character's bytes (4) are decoded again.
    expect(Math.max(...calls)).toBeLessThanOrEqual(4);
  });
});
