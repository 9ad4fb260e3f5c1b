import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { dumpString, dumpsPython, JsonNumber, JsonSyntaxError, parseJson, pythonFloatRepr } from "./json.js";

const havePython = spawnSync("python3", ["-c", "pass"]).status === 0;
if (!havePython)
  process.stderr.write("\n*** python3 missing: the json.dumps oracle tests are SKIPPED ***\n\n");

/** Runs a Python snippet that reads JSON lines on stdin and prints one result line per input line. */
function python(script: string, lines: string[]): string[] {
  const r = spawnSync("python3", ["-c", script], {
    input: `${lines.join("\n")}\n`,
    encoding: "utf8",
    env: { ...process.env, PYTHONIOENCODING: "utf-8" },
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").slice(0, lines.length);
}

/** A deterministic generator of nasty strings: controls, quotes, DEL, BMP and astral characters. */
function nastyStrings(count: number): string[] {
  let s = 12345;
  const rand = (n: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % n;
  };
  const pool = [
    ..."\u0000\u0001\u0008\t\n\u000b\f\r\u001f \"\\/'<>&~\u007f\u0080\u00e9\u00ff\u2028\u2029\u4e2d\ufeff\uffff",
    "😀",
    "𝄞",
    "é",
    "abc",
    "<extra_id_1>",
  ];
  return Array.from({ length: count }, () =>
    Array.from({ length: 1 + rand(12) }, () => pool[rand(pool.length)]).join(""),
  );
}

describe("parseJson", () => {
  it("keeps key order (also for integer-like keys) and the text of numbers", () => {
    const v = parseJson('{"b": 1, "2": 4.0, "a": [-100.0, 1e-05, 3], "1": null}');
    expect(v).toBeInstanceOf(Map);
    const m = v as Map<string, unknown>;
    expect([...m.keys()]).toEqual(["b", "2", "a", "1"]);
    expect((m.get("2") as JsonNumber).text).toBe("4.0");
    expect((m.get("a") as JsonNumber[]).map((n) => n.text)).toEqual(["-100.0", "1e-05", "3"]);
    expect((m.get("a") as JsonNumber[])[0].value).toBe(-100);
  });

  it("decodes escapes, including surrogate pairs", () => {
    expect(parseJson('"a\\n\\"\\\\\\/\\u00e9\\ud83d\\ude00"')).toBe('a\n"\\/é😀');
  });

  it.each([
    ['{"a": "x', "unterminated string"],
    ['{"a": 1,', "unexpected end of line (truncated?)"],
    ['{"a": 1, "a": 2}', 'duplicate key "a"'],
    ['{"a": tru}', "expected a JSON value"],
    ['{"a": 1} x', "unexpected text after the JSON value"],
    ['"a\tb"', "control character in string"],
  ])("rejects %s with a located message", (text, what) => {
    let err: unknown;
    try {
      parseJson(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JsonSyntaxError);
    expect((err as JsonSyntaxError).message).toContain(what);
    expect((err as JsonSyntaxError).column).toBeGreaterThan(0);
  });

  it("rejects nesting deeper than Python reads with a located message, not a stack overflow", () => {
    for (const [open, close] of [
      ["[", "]"],
      ['{"a": ', "}"],
    ]) {
      expect(() => parseJson(`${open.repeat(1000)}1${close.repeat(1000)}`)).not.toThrow();
      for (const depth of [1001, 100_000]) {
        const text = `${open.repeat(depth)}1${close.repeat(depth)}`;
        expect(() => parseJson(text)).toThrow(JsonSyntaxError);
        expect(() => parseJson(text)).toThrow(
          `nested deeper than 1000 levels at column ${1000 * open.length + 1}`,
        );
      }
    }
  });

  it("agrees with JSON.parse on ordinary documents", () => {
    const doc = { s: "x\u2028y", n: [1, -2.5, 1e21], o: { t: true, f: false, z: null } };
    const back = parseJson(JSON.stringify(doc));
    expect(dumpsPython(back, { ensureAscii: false, compact: true })).toBe(JSON.stringify(doc));
  });
});

describe("dumpsPython", () => {
  it("uses Python's separators and escapes", () => {
    const v = parseJson('{"a": [1, 2.0], "b": {"c": "é\\u007f😀\\n"}}');
    expect(dumpsPython(v, { ensureAscii: true })).toBe(
      '{"a": [1, 2.0], "b": {"c": "\\u00e9\\u007f\\ud83d\\ude00\\n"}}',
    );
    expect(dumpsPython(v, { ensureAscii: false })).toBe('{"a": [1, 2.0], "b": {"c": "é\u007f😀\\n"}}');
  });

  it("writes a lone surrogate as the escape it came from, also without ensure_ascii (UTF-8 has no form for it)", () => {
    const line = '{"c": "é \\ud800x \\ud83d\\ude00 \\udc00"}';
    const v = parseJson(line);
    expect(dumpsPython(v, { ensureAscii: false })).toBe('{"c": "é \\ud800x 😀 \\udc00"}');
    expect(Buffer.from(dumpsPython(v, { ensureAscii: false })).toString()).not.toContain("\ufffd");
  });

  describe.skipIf(!havePython)("against CPython's json.dumps (oracle)", () => {
    const strings = nastyStrings(400);
    for (const ensureAscii of [true, false]) {
      it(`escapes strings byte for byte (ensure_ascii=${ensureAscii ? "True" : "False"})`, () => {
        // Send the strings as ASCII-safe JSON; Python re-dumps them with its own encoder.
        const lines = strings.map((s) => dumpString(s, true));
        const expected = python(
          `import sys, json\nfor l in sys.stdin.read().split("\\n")[:-1]: print(json.dumps({"k": [json.loads(l), 1.0]}, ensure_ascii=${ensureAscii ? "True" : "False"}))`,
          lines,
        );
        // Python's stdout is UTF-8: decode the same way for the comparison.
        const ours = strings.map((s) =>
          dumpsPython(new Map([["k", [s, new JsonNumber("1.0")]]]), { ensureAscii }),
        );
        expect(ours).toEqual(expected);
      });
    }

    it("prints floats as Python's repr does", () => {
      const xs = [
        0,
        -0,
        1,
        -100,
        4,
        0.1,
        0.5,
        2.5,
        1 / 3,
        1e-4,
        1e-5,
        1.5e-7,
        123456789012345.6,
        1e15,
        1e16,
        1.2345e16,
        1e22,
        5e-324,
        1.7976931348623157e308,
        -2.75,
        3.25159,
        100.25,
        0.000123,
      ];
      const expected = python(
        "import sys\nfor l in sys.stdin.read().split()[:]: print(repr(float(l)))",
        xs.map((x) => (Object.is(x, -0) ? "-0.0" : x.toString())),
      );
      expect(xs.map(pythonFloatRepr)).toEqual(expected);
    });
  });
});
