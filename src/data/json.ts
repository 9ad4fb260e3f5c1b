/**
 * A JSON reader and writer that keep what NeMo's files need for a byte-identical round trip.
 *
 * NeMo writes its JSONL with Python's `json.dumps`. `JSON.parse` / `JSON.stringify` lose three things
 * that matter here: the text of numbers (`4.0` becomes `4`), the order of integer-like object keys, and
 * Python's escaping. So objects are `Map`s (insertion order, always), numbers keep their source text,
 * and `dumpsPython` escapes exactly as CPython's `json.dumps` does. Errors carry the column.
 */

/** A number with the exact text it was written with (`4.0`, `-100.0`, `1e-05`). */
export class JsonNumber {
  constructor(readonly text: string) {}
  get value(): number {
    if (this.text === "NaN") return Number.NaN;
    if (this.text === "Infinity") return Number.POSITIVE_INFINITY;
    if (this.text === "-Infinity") return Number.NEGATIVE_INFINITY;
    return Number(this.text);
  }
  /** Written without a fraction or exponent: Python reads it back as an int. */
  get isInt(): boolean {
    return /^-?\d+$/.test(this.text);
  }
  static int(n: number): JsonNumber {
    if (!Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer`);
    return new JsonNumber(String(n));
  }
  /** A float written as Python's `repr(float)` writes it (`4.0`, `-100.0`, `1e-05`, `1e+16`). */
  static float(n: number): JsonNumber {
    return new JsonNumber(pythonFloatRepr(n));
  }
}

export type JsonObject = Map<string, Json>;
export type Json = null | boolean | string | JsonNumber | Json[] | JsonObject;

export class JsonSyntaxError extends Error {
  constructor(
    readonly what: string,
    /** 1-based column (UTF-16 units) where the problem was found. */
    readonly column: number,
  ) {
    super(`${what} at column ${column}`);
  }
}

/**
 * The deepest nesting read: about where CPython's `json.loads` stops (its recursion limit), so no NeMo file
 * is deeper, and well within the stack this recursive reader needs.
 */
const MAX_DEPTH = 1000;

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Parses one JSON document (one JSONL line). Accepts what Python's `json.loads` accepts, including
 * `NaN` and `Infinity`; rejects duplicate keys (Python would silently keep the last one).
 */
export function parseJson(text: string): Json {
  let pos = 0;
  const fail = (what: string, at = pos): never => {
    throw new JsonSyntaxError(
      at >= text.length ? `${what}: unexpected end of line (truncated?)` : what,
      at + 1,
    );
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else return;
    }
  };
  const expectChar = (ch: string) => {
    if (text[pos] !== ch) fail(`expected "${ch}"`);
    pos++;
  };

  const parseString = (): string => {
    // pos is at the opening quote. Copy runs of plain characters in one slice.
    let out = "";
    let i = pos + 1;
    let runStart = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(runStart, i);
        pos = i + 1;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(runStart, i);
        const e = text[i + 1];
        switch (e) {
          case '"':
          case "\\":
          case "/":
            out += e;
            break;
          case "n":
            out += "\n";
            break;
          case "t":
            out += "\t";
            break;
          case "r":
            out += "\r";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "u": {
            const hex = text.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape in string", i);
            out += String.fromCharCode(Number.parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail("bad escape in string", i);
        }
        i += 2;
        runStart = i;
        continue;
      }
      if (Number.isNaN(c)) fail("unterminated string", i);
      if (c < 0x20) fail("control character in string (must be escaped)", i);
      i++;
    }
  };

  let depth = 0;
  // An object or array: `opens` steps into it and says whether an item follows (false: it was empty and
  // is closed); `continues`, after each item, takes the `,` before another or the closing character.
  const opens = (close: string): boolean => {
    pos++;
    depth++;
    ws();
    if (text[pos] !== close) return true;
    pos++;
    depth--;
    return false;
  };
  const continues = (close: string): boolean => {
    ws();
    if (text[pos] === ",") {
      pos++;
      return true;
    }
    expectChar(close);
    depth--;
    return false;
  };
  const parseValue = (): Json => {
    ws();
    const c = text[pos];
    if (c === '"') return parseString();
    if ((c === "{" || c === "[") && depth === MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
    if (c === "{") {
      const obj: JsonObject = new Map();
      if (opens("}")) {
        do {
          ws();
          if (text[pos] !== '"') fail("expected a string key");
          const keyAt = pos;
          const key = parseString();
          if (obj.has(key)) fail(`duplicate key "${key}"`, keyAt);
          ws();
          expectChar(":");
          obj.set(key, parseValue());
        } while (continues("}"));
      }
      return obj;
    }
    if (c === "[") {
      const arr: Json[] = [];
      if (opens("]")) {
        do arr.push(parseValue());
        while (continues("]"));
      }
      return arr;
    }
    for (const [word, value] of [
      ["null", null],
      ["true", true],
      ["false", false],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    for (const word of ["NaN", "Infinity", "-Infinity"]) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return new JsonNumber(word);
      }
    }
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (m) {
      pos += m[0].length;
      return new JsonNumber(m[0]);
    }
    return fail("expected a JSON value");
  };

  const value = parseValue();
  ws();
  if (pos < text.length) fail("unexpected text after the JSON value");
  return value;
}

export interface DumpOptions {
  /** Python's default `ensure_ascii=True`: every character outside 0x20..0x7e is written as `\uXXXX`. */
  ensureAscii: boolean;
  /** Python's default (`", "`, `": "`) or compact (`","`, `":"`, as `JSON.stringify`). */
  compact?: boolean;
}

// CPython's json.encoder: ESCAPE_ASCII = ([\\"]|[^\ -~]) and ESCAPE = [\x00-\x1f\\"\b\f\n\r\t]. A lone
// surrogate (from a `\ud800` escape in the input) has no UTF-8 form, where Python would fail to write it:
// escaped as it came, not turned into U+FFFD.
const ESCAPE_ASCII_RE = /[\\"]|[^\x20-\x7e]/g;
const ESCAPE_RE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\x00-\x1f\\"]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const SHORT_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  '"': '\\"',
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

function escapeChar(ch: string): string {
  // A JS string is UTF-16, so an astral character arrives as two code units and is written as a
  // surrogate pair, as Python does. Python writes lowercase hex.
  return SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

export function dumpString(s: string, ensureAscii: boolean): string {
  const re = ensureAscii ? ESCAPE_ASCII_RE : ESCAPE_RE;
  re.lastIndex = 0;
  if (!re.test(s)) return `"${s}"`;
  re.lastIndex = 0;
  return `"${s.replace(re, escapeChar)}"`;
}

/** `json.dumps(value, ensure_ascii=...)` byte for byte (numbers are written with their kept text). */
export function dumpsPython(value: Json, opts: DumpOptions): string {
  const itemSep = opts.compact ? "," : ", ";
  const keySep = opts.compact ? ":" : ": ";
  const dump = (v: Json): string => {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "string") return dumpString(v, opts.ensureAscii);
    if (v instanceof JsonNumber) return v.text;
    if (Array.isArray(v)) return `[${v.map(dump).join(itemSep)}]`;
    const parts: string[] = [];
    for (const [k, x] of v) parts.push(`${dumpString(k, opts.ensureAscii)}${keySep}${dump(x)}`);
    return `{${parts.join(itemSep)}}`;
  };
  return dump(value);
}

/**
 * True when the text has a character that `ensure_ascii=True` would have escaped (DEL or anything
 * outside ASCII), i.e. the line was written with `ensure_ascii=False`.
 */
export function writtenWithoutEnsureAscii(text: string): boolean {
  return /[\u007f-\uffff]/.test(text);
}

/**
 * Python's `repr(float)`: the shortest digits that round-trip (JS finds the same ones), in fixed
 * notation when the decimal exponent is in -4..15, otherwise `d.ddde+XX`; integral values get `.0`.
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const text = x.toExponential();
  const e = text.indexOf("e");
  const mant = text.slice(0, e);
  const exp = Number(text.slice(e + 1));
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  let body: string;
  if (exp >= -4 && exp < 16) {
    if (exp >= digits.length - 1) body = `${digits}${"0".repeat(exp - digits.length + 1)}.0`;
    else if (exp >= 0) body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    else body = `0.${"0".repeat(-exp - 1)}${digits}`;
  } else {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    body = `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return neg ? `-${body}` : body;
}

/** A plain JS value (e.g. a Parquet row cell) as Json; integers stay ints, other numbers become floats. */
export function fromJs(value: unknown): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return new JsonNumber(value.toString());
  if (typeof value === "number")
    return Number.isInteger(value) ? new JsonNumber(String(value)) : JsonNumber.float(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(fromJs);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [String(k), fromJs(v)]));
  if (typeof value === "object") {
    return new Map(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, fromJs(v)]));
  }
  return String(value);
}

export function isObject(v: Json | undefined): v is JsonObject {
  return v instanceof Map;
}
