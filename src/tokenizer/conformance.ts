import { readFileSync } from "node:fs";
import { InputError } from "../util/errors.js";
import type { Tokenizer } from "./types.js";

/**
 * llama.cpp's tokenizer test files (models/ggml-vocab-*.gguf.inp / .out), read exactly as
 * tests/test-tokenizer-0.cpp reads them: the .inp text is split on "\n__ggml_vocab_test__\n" (the file ends
 * with one, so nothing follows the last case; inputs keep every leading and trailing space and newline),
 * and each .out line, stripped, is the space-separated ids of that case, without BOS.
 */
export interface VocabTestCase {
  input: string;
  expected: number[];
}

const SEPARATOR = "\n__ggml_vocab_test__\n";

export function readVocabTests(inpPath: string, outPath: string): VocabTestCase[] {
  const raw = readFileSync(inpPath, "utf8");
  const inputs: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(SEPARATOR, pos);
    if (next < 0) {
      inputs.push(raw.slice(pos));
      break;
    }
    inputs.push(raw.slice(pos, next));
    pos = next + SEPARATOR.length;
  }
  const lines = readFileSync(outPath, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop(); // the newline that ends the last line
  if (lines.length !== inputs.length)
    throw new InputError(`${lines.length} lines of ids for ${inputs.length} test strings in ${inpPath}`, {
      file: outPath,
    });
  return inputs.map((input, i) => {
    const stripped = (lines[i] ?? "").trim();
    const expected = stripped === "" ? [] : stripped.split(" ").map(Number);
    if (expected.some((id) => !Number.isInteger(id) || id < 0))
      throw new InputError("expected space-separated token ids", { file: outPath, line: i + 1 });
    return { input, expected };
  });
}

export interface ConformanceResult {
  matched: number;
  total: number;
  failures: Array<{ index: number; input: string; expected: number[]; actual: number[] }>;
}

export function runConformance(tokenizer: Tokenizer, cases: readonly VocabTestCase[]): ConformanceResult {
  const failures: ConformanceResult["failures"] = [];
  cases.forEach((c, index) => {
    const actual = tokenizer.encode(c.input);
    const same = actual.length === c.expected.length && actual.every((id, i) => id === c.expected[i]);
    if (!same) failures.push({ index, input: c.input, expected: c.expected, actual });
  });
  return { matched: cases.length - failures.length, total: cases.length, failures };
}
