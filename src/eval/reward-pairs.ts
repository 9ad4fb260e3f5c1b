import { asString } from "../data/formats/fields.js";
import { firstLine, parquetColumns, readLines, readParquetRows, sniffFile } from "../data/input.js";
import { fromJs, type Json, JsonSyntaxError, parseJson } from "../data/json.js";
import { readRecords } from "../data/read.js";
import type { DataRecord } from "../data/record.js";
import { DEFAULT_SYSTEM_PROMPT } from "../data/template.js";
import { InputError } from "../util/errors.js";

/**
 * Preference pairs for `eval reward`: the same conversation ending in a chosen and in a rejected reply.
 *
 * - RewardBench rows (`allenai/reward-bench`, JSONL or Parquet): `prompt, chosen, rejected, subset`
 *   (other columns such as `id` are ignored). The prompt is one user turn under SteerLM's default system
 *   prompt, as `steerlm annotate` reads a conversation without one.
 * - HelpSteer2's preference file, through the `helpsteer2-preference` importer (src/data): a row's two
 *   responses become a pair, the preferred one (preference_strength < 0: response 1) chosen; rows of
 *   strength 0 state no preference and are skipped (counted). The subset is the row's `split`.
 */
export interface PreferencePair {
  subset: string;
  chosen: DataRecord;
  rejected: DataRecord;
  /** Where the pair came from, for errors and the JSON report. */
  origin: { file: string; line: number };
}

export interface PairFile {
  format: "rewardbench" | "helpsteer2-preference";
  pairs: PreferencePair[];
  /** Rows read that gave no pair (HelpSteer2 rows without a preference). */
  skipped: number;
}

const REWARDBENCH_KEYS = ["prompt", "chosen", "rejected"];

export async function readPairs(path: string, limit = Number.POSITIVE_INFINITY): Promise<PairFile> {
  const kind = await sniffFile(path).catch((err: Error) => {
    throw new InputError(`cannot read: ${err.message}`, { file: path });
  });
  const keys =
    kind === "parquet" ? await parquetColumns(path) : Object.keys(firstObject(await firstLine(path), path));
  if (REWARDBENCH_KEYS.every((k) => keys.includes(k)))
    return readRewardBench(path, kind === "parquet", limit);
  if (["prompt", "response_1", "response_2"].every((k) => keys.includes(k)))
    return readHelpSteer2(path, limit);
  throw new InputError(
    `neither RewardBench rows nor HelpSteer2 preference rows (columns: ${keys.join(", ")})`,
    { file: path },
    "expected prompt, chosen, rejected, subset (RewardBench) or prompt, response_1, response_2, preference_strength (HelpSteer2)",
  );
}

function firstObject(
  line: { line: number; text: string } | undefined,
  file: string,
): Record<string, unknown> {
  if (!line) throw new InputError("the file is empty", { file });
  try {
    const v = JSON.parse(line.text) as unknown;
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {}
  throw new InputError("not a JSON object", { file, line: line.line });
}

async function readRewardBench(path: string, parquet: boolean, limit: number): Promise<PairFile> {
  const pairs: PreferencePair[] = [];
  const rows = parquet ? parquetRows(path) : jsonRows(path);
  for await (const { line, row } of rows) {
    if (pairs.length >= limit) break;
    const at = (field: string) => ({ file: path, line, field });
    const text = (field: string) => {
      try {
        return asString(row.get(field), field);
      } catch (err) {
        throw new InputError((err as InputError).what, at(field));
      }
    };
    const subset = row.has("subset") ? text("subset") : "all";
    const conversation = (reply: string): DataRecord => ({
      system: DEFAULT_SYSTEM_PROMPT,
      turns: [
        { role: "user", text: text("prompt"), labels: null },
        { role: "assistant", text: reply, labels: null },
      ],
      extra: new Map(),
    });
    pairs.push({
      subset,
      chosen: conversation(text("chosen")),
      rejected: conversation(text("rejected")),
      origin: { file: path, line },
    });
  }
  return { format: "rewardbench", pairs, skipped: 0 };
}

async function* jsonRows(path: string): AsyncGenerator<{ line: number; row: Map<string, Json> }> {
  for await (const { line, text, problem } of readLines(path)) {
    if (problem) throw new InputError(problem.message, { file: path, line }, problem.hint);
    if (text.trim() === "") continue;
    let json: Json;
    try {
      json = parseJson(text);
    } catch (err) {
      const what = err instanceof JsonSyntaxError ? err.message : String(err);
      throw new InputError(`not JSON: ${what}`, { file: path, line });
    }
    if (!(json instanceof Map)) throw new InputError("expected a JSON object", { file: path, line });
    yield { line, row: json };
  }
}

async function* parquetRows(path: string): AsyncGenerator<{ line: number; row: Map<string, Json> }> {
  for await (const { line, row } of readParquetRows(path))
    yield { line, row: fromJs(row) as Map<string, Json> };
}

async function readHelpSteer2(path: string, limit: number): Promise<PairFile> {
  const byPair = new Map<string, DataRecord[]>();
  let skipped = 0;
  const pairs: PreferencePair[] = [];
  for await (const record of readRecords(path, { format: "helpsteer2-preference", allowUnlabeled: true })) {
    const p = record.preference;
    if (!p) continue;
    const both = byPair.get(p.pairId) ?? [];
    both[p.response - 1] = record;
    byPair.set(p.pairId, both);
    const [one, two] = both;
    if (!one || !two) continue;
    byPair.delete(p.pairId);
    if (p.strength === 0) {
      skipped++;
      continue;
    }
    const split = record.extra.get("split");
    pairs.push({
      subset: typeof split === "string" ? split : "helpsteer2",
      chosen: p.strength < 0 ? one : two,
      rejected: p.strength < 0 ? two : one,
      origin: { file: path, line: record.origin?.line ?? 0 },
    });
    if (pairs.length >= limit) break;
  }
  return { format: "helpsteer2-preference", pairs, skipped };
}
