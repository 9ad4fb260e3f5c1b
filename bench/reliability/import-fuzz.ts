import { isUtf8 } from "node:buffer";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Rng } from "../../src/util/rng.js";
import { cli, isUserError, type PartResult, sharedDataDir, Tally } from "./common.js";

/**
 * Importer fuzz: lines of the real NeMo-Aligner files in ../shared/data, mutated (truncated, bytes flipped,
 * values of the wrong type, huge numbers, deep nesting, invalid UTF-8) and mixed with untouched ones, through
 * `data convert --skip-invalid --rejects`. NeMo files are rewritten byte for byte, so the output must be
 * exactly the lines that were not rejected, in order; every rejected line must be reported with its file and
 * line; no untouched line may be rejected; the command must never crash.
 */
export interface ImportFuzzOptions {
  dir: string;
  seed: number;
  lines: number;
}

/** The shared files, each with the flags that read it and write it back in its own format. */
const SOURCES = [
  {
    file: "nemo-aligner/sft_512_sample_extra_id_format.jsonl",
    flags: ["--from", "steerlm", "--to", "steerlm"],
  },
  {
    file: "nemo-aligner/dummy-sft.jsonl",
    flags: ["--from", "steerlm", "--to", "steerlm", "--allow-unlabeled"],
  },
  { file: "nemo-aligner/test-rm.jsonl", flags: ["--from", "regression", "--to", "regression"] },
] as const;

const HUGE = ["1e999", "-1e999", "99999999999999999999999", "18446744073709551616", "1e-999", "-0", "NaN"];
const WRONG: unknown[] = [null, 0, -1, true, "", "x", [], {}, [1, 2], { a: 1 }, 1e308];
const BAD_UTF8 = [
  [0xff],
  [0xc3],
  [0x80],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xc0, 0xaf],
  [0xfe, 0xff],
];

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A random node of `v` (objects and arrays included), replaced by `make(old)`. */
export function replaceRandomNode(rng: Rng, v: Json, make: (old: Json) => Json): Json {
  const containers: Array<{ parent: Json[] | { [k: string]: Json }; key: string | number }> = [];
  const walk = (x: Json) => {
    if (Array.isArray(x))
      x.forEach((c, i) => {
        containers.push({ parent: x, key: i });
        walk(c);
      });
    else if (x !== null && typeof x === "object")
      for (const [k, c] of Object.entries(x)) {
        containers.push({ parent: x, key: k });
        walk(c);
      }
  };
  walk(v);
  if (containers.length === 0) return make(v);
  const { parent, key } = rng.pick(containers);
  if (Array.isArray(parent)) parent[key as number] = make(parent[key as number] as Json);
  else parent[key as string] = make(parent[key as string] as Json);
  return v;
}

/** A marker value that `deepen` replaces by nesting too deep for JSON.stringify to write. */
export const DEEP = "\u0000DEEP";

/** `json` with its DEEP marker replaced by `depth` nested arrays (or objects) around a 1. */
export function deepen(json: string, depth: number, objects = false): string {
  const [open, close] = objects ? ['{"a":', "}"] : ["[", "]"];
  return json.replace(JSON.stringify(DEEP), `${open.repeat(depth)}1${close.repeat(depth)}`);
}

const MUTATIONS: Record<string, (rng: Rng, line: Buffer) => Buffer> = {
  truncate: (rng, b) => b.subarray(0, rng.int(0, Math.max(0, b.length - 1))),
  flip: (rng, b) => {
    const c = Buffer.from(b);
    for (let n = rng.int(1, 4); n > 0 && c.length > 0; n--) c[rng.int(0, c.length - 1)]! ^= rng.int(1, 255);
    return c;
  },
  wrongType: (rng, b) =>
    Buffer.from(
      JSON.stringify(
        replaceRandomNode(rng, JSON.parse(b.toString("utf8")) as Json, () => rng.pick(WRONG) as Json),
      ),
    ),
  hugeNumber: (rng, b) => {
    const s = b.toString("utf8");
    const numbers = [...s.matchAll(/(?<=[:,[ ])-?\d+(\.\d+)?(?=[,}\] ])|(?<=[a-z_]:)\d+/g)];
    if (numbers.length === 0) return Buffer.from(s);
    const m = rng.pick(numbers);
    const at = m.index ?? 0;
    return Buffer.from(s.slice(0, at) + rng.pick(HUGE) + s.slice(at + m[0].length));
  },
  deepNesting: (rng, b) => {
    const depth = rng.pick([64, 1000, 10_000, 100_000]);
    const s = JSON.stringify(replaceRandomNode(rng, JSON.parse(b.toString("utf8")) as Json, () => DEEP));
    return Buffer.from(deepen(s, depth, rng.chance(0.5)));
  },
  invalidUtf8: (rng, b) => {
    const at = rng.int(0, b.length);
    return Buffer.concat([b.subarray(0, at), Buffer.from(rng.pick(BAD_UTF8)), b.subarray(at)]);
  },
};

export async function importFuzz(o: ImportFuzzOptions): Promise<PartResult> {
  const t = new Tally("importer fuzz");
  const rng = new Rng(`import-fuzz:${o.seed}`);
  const originals = SOURCES.map((s) =>
    readFileSync(join(sharedDataDir, s.file))
      .toString("latin1")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => Buffer.from(l, "latin1")),
  );
  const total = originals.reduce((a, l) => a + l.length, 0);
  const kinds: Record<string, number> = {};
  let reported = 0;
  let kept = 0;
  let normalized = 0;
  for (const [i, source] of SOURCES.entries()) {
    const pool = originals[i] as Buffer[];
    const n = Math.max(1, Math.round((o.lines * pool.length) / total));
    const untouched = new Set(pool.map((b) => b.toString("latin1")));
    const lines: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const line = rng.pick(pool);
      if (rng.chance(0.25)) lines.push(line);
      else {
        const kind = rng.pick(Object.keys(MUTATIONS));
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        lines.push((MUTATIONS[kind] as (r: Rng, b: Buffer) => Buffer)(rng, line));
      }
    }
    const input = join(o.dir, `fuzz-${basename(source.file)}`);
    const output = join(o.dir, `out-${basename(source.file)}`);
    const rejects = join(o.dir, `rejects-${basename(source.file)}`);
    writeFileSync(input, Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")])));
    const r = await cli([
      "data",
      "convert",
      input,
      ...source.flags,
      "--skip-invalid",
      "--rejects",
      rejects,
      "-o",
      output,
    ]);
    if (
      !t.check(
        r.code === 0 || isUserError(r),
        () => `${input}: data convert crashed (${r.code}):\n${r.stderr.slice(0, 2000)}`,
      )
    )
      continue;
    const c = checkConvert(input, output, rejects, untouched);
    reported += c.reported;
    kept += c.kept;
    normalized += c.normalized;
    for (const f of c.failures) t.fail(f);
    // each fuzzed line is a trial: it held when it was kept byte for byte or reported with its place
    t.runs += c.lines;
    t.passed += c.lines - c.failures.length;
  }
  t.notes.push(
    `${t.runs} lines: ${kept} kept byte-identical, ${normalized} mutated but valid lines kept with the same value (respelled), ${reported} reported with file:line; mutations ${JSON.stringify(kinds)}`,
  );
  return t.result();
}

/** Compares a convert's output and rejects with its input, line by line. */
function checkConvert(
  input: string,
  output: string,
  rejectsPath: string,
  untouched: ReadonlySet<string>,
): { lines: number; kept: number; normalized: number; reported: number; failures: string[] } {
  const failures: string[] = [];
  const inLines = splitLines(readFileSync(input));
  const outLines = safeRead(output);
  const rejected = new Map<number, string>();
  for (const text of safeRead(rejectsPath)) {
    let j: { file?: unknown; line?: unknown; error?: unknown };
    try {
      j = JSON.parse(text.toString("utf8"));
    } catch {
      failures.push(`${rejectsPath}: not JSON: ${text.toString("utf8").slice(0, 200)}`);
      continue;
    }
    if (j.file !== input || typeof j.line !== "number" || typeof j.error !== "string")
      failures.push(`${rejectsPath}: a reject without its place: ${text.toString("utf8").slice(0, 200)}`);
    else if (!j.error.startsWith(`${input}:${j.line}:`))
      failures.push(`${input}:${j.line}: the error is not located: ${j.error.slice(0, 200)}`);
    else rejected.set(j.line, j.error);
  }
  const keptIn = inLines
    .map((line, i) => ({ line, at: `${input}:${i + 1}` }))
    .filter(({ line }, i) => !rejected.has(i + 1) && line.toString("utf8").trim() !== ""); // blank: not rows
  for (const [i, line] of inLines.entries())
    if (rejected.has(i + 1) && untouched.has(line.toString("latin1")))
      failures.push(`${input}:${i + 1}: an untouched line was rejected: ${rejected.get(i + 1)}`);
  if (keptIn.length !== outLines.length) {
    failures.push(
      `${output}: ${outLines.length} lines, but ${keptIn.length} input lines were neither rejected nor blank`,
    );
    return { lines: inLines.length, kept: 0, normalized: 0, reported: rejected.size, failures };
  }
  let kept = 0;
  let normalized = 0;
  for (const [k, { line, at }] of keptIn.entries()) {
    const out = outLines[k] as Buffer;
    if (out.equals(line)) kept++;
    else if (untouched.has(line.toString("latin1")))
      failures.push(`${at}: an untouched line was not kept byte for byte`);
    else if (!isUtf8(line))
      failures.push(`${at}: a line that is not UTF-8 was kept (rewritten as ${out.length} bytes)`);
    // a mutated line need not be in NeMo's own spelling: the importer may respell it, but not change it
    else if (isDeepStrictEqual(JSON.parse(line.toString("utf8")), JSON.parse(out.toString("utf8"))))
      normalized++;
    else failures.push(`${at}: kept, but its value changed`);
  }
  return { lines: inLines.length, kept, normalized, reported: rejected.size, failures };
}

function splitLines(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = b.indexOf(0x0a); i !== -1; i = b.indexOf(0x0a, start)) {
    out.push(b.subarray(start, i));
    start = i + 1;
  }
  if (start < b.length) out.push(b.subarray(start));
  return out;
}

const safeRead = (path: string): Buffer[] => {
  try {
    return splitLines(readFileSync(path));
  } catch {
    return [];
  }
};
