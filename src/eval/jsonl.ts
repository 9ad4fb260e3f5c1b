import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { describe, InputError, type Place } from "../util/errors.js";
import { readInputText } from "../util/files.js";

/**
 * FastChat's files are small JSONL (80-line benchmarks, judgments a few thousand lines): read whole,
 * parse each line, and locate every problem as `file:line: field`.
 */
export type JsonRecord = Record<string, unknown>;

export interface Located<T> {
  value: T;
  line: number;
}

export function readJsonl<T>(path: string, parse: (obj: JsonRecord, at: Place) => T): Located<T>[] {
  if (!existsSync(path)) throw new InputError("no such file", { file: path });
  const out: Located<T>[] = [];
  const whole = readInputText(path);
  const lines = whole.split("\n");
  for (const [i, text] of lines.entries()) {
    if (text.trim() === "") continue;
    const at: Place = { file: path, line: i + 1 };
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      // A crash mid-write leaves a truncated last line: say so, since resuming would otherwise loop on it.
      const last = i >= lines.length - 2;
      throw new InputError(
        `not JSON: ${(err as Error).message}`,
        at,
        last ? "the last line looks truncated (an interrupted run?): delete it and run again" : undefined,
      );
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj))
      throw new InputError(`expected a JSON object, got ${describe(obj)}`, at);
    out.push({ value: parse(obj as JsonRecord, at), line: i + 1 });
  }
  return out;
}

/** Appends one record as a line; the line is complete on disk before the next one starts. */
export function appendJsonl(path: string, record: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  appendFileSync(path, `${JSON.stringify(record)}\n`);
}

// Field readers: each names the field and the place when the value has the wrong shape.
const bad = (at: Place, field: string, what: string, got: unknown) =>
  new InputError(`expected ${what}, got ${describe(got)}`, { ...at, field });

export function str(obj: JsonRecord, field: string, at: Place): string {
  const v = obj[field];
  if (typeof v !== "string") throw bad(at, field, "a string", v);
  return v;
}

export function optStr(obj: JsonRecord, field: string, at: Place): string | undefined {
  return obj[field] === undefined ? undefined : str(obj, field, at);
}

export function num(obj: JsonRecord, field: string, at: Place): number {
  const v = obj[field];
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(at, field, "a number", v);
  return v;
}

/** Question ids are integers in FastChat's data; strings are accepted for other benchmarks. */
export function questionId(obj: JsonRecord, at: Place): number | string {
  const v = obj.question_id;
  if ((typeof v === "number" && Number.isInteger(v)) || (typeof v === "string" && v !== "")) return v;
  throw bad(at, "question_id", "an integer or a non-empty string", v);
}

export function strings(obj: JsonRecord, field: string, at: Place): string[] {
  const v = obj[field];
  if (!Array.isArray(v)) throw bad(at, field, "an array of strings", v);
  return v.map((x, i) => {
    if (typeof x !== "string") throw bad(at, `${field}[${i}]`, "a string", x);
    return x;
  });
}

// shortuuid's alphabet (no 0/1/I/O/l): FastChat's answer, review and judgment ids are 22 such characters.
const SHORT_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** A random 22-character id in the shape of Python's `shortuuid.uuid()`. */
export function shortUuid(): string {
  const bytes = randomBytes(22);
  let out = "";
  // 57 symbols: 256 % 57 leaves a small bias we accept for an id.
  for (const b of bytes) out += SHORT_ALPHABET[b % SHORT_ALPHABET.length];
  return out;
}
