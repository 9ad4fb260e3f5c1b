/**
 * The reliability suite: `npm run reliability [-- --seed N] [--only sft,annotate,…] [--quick] [--keep]`.
 * Builds dist/ first (the parts run the real CLI), runs each part, prints a table and writes
 * reliability.json (the seed, the machine, and every part's result with its failures). Exits 1 when any part
 * fails. Not part of `npm test`, which runs a small, fast subset (test/reliability.test.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type PartResult, sharedDataDir } from "./common.js";
import { type Fixtures, makeFixtures, PARTS, type PartName, SIZES, type Sizes } from "./parts.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string", default: "1" },
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    out: { type: "string", default: "reliability.json" },
  },
});
const seed = Number(values.seed);
if (!Number.isSafeInteger(seed)) throw new Error(`--seed: expected a whole number, got ${values.seed}`);
const names = (values.only?.split(",") ?? Object.keys(PARTS)) as PartName[];
for (const n of names)
  if (!(n in PARTS)) throw new Error(`--only: unknown part ${n} (parts: ${Object.keys(PARTS).join(", ")})`);
const sizes: Sizes = values.quick ? SIZES.quick : SIZES.full;

const work = mkdtempSync(join(tmpdir(), "steerlm-reliability-"));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const machine = `${cpus().length} × ${cpus()[0]?.model ?? "CPU"}, load average at start ${load()}`;
process.stderr.write(
  `reliability: seed ${seed}, ${values.quick ? "quick" : "full"} sizes, in ${work}\n${machine}\n`,
);

const results: PartResult[] = [];
let fixtures: Fixtures | undefined;
try {
  for (const name of names) {
    const dir = join(work, name);
    mkdirSync(dir);
    process.stderr.write(`\n== ${name} (load ${load()})\n`);
    const part = PARTS[name];
    if (part.needsFixtures && fixtures === undefined) fixtures = await makeFixtures(join(work, "fixtures"));
    try {
      results.push(await part.run({ dir, seed, sizes, fixtures: fixtures as Fixtures }));
    } catch (err) {
      results.push({
        part: name,
        runs: 0,
        passed: 0,
        ok: false,
        seconds: 0,
        notes: [],
        failures: [
          `the part could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
        ],
      });
    }
    const r = results.at(-1) as PartResult;
    process.stderr.write(`${r.ok ? "ok" : "FAILED"}: ${r.passed}/${r.runs} in ${r.seconds} s\n`);
  }
} finally {
  if (!values.keep) rmSync(work, { recursive: true, force: true });
}

const rows = results.map((r) => [r.part, `${r.passed}/${r.runs}`, r.ok ? "pass" : "FAIL", `${r.seconds} s`]);
const header = ["part", "held", "verdict", "time"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
const table = [line(header), ...rows.map(line)].join("\n");
process.stdout.write(`\n${table}\n`);
for (const r of results) {
  for (const n of r.notes) process.stdout.write(`  ${r.part}: ${n}\n`);
  for (const f of r.failures.slice(0, 10)) process.stdout.write(`  ${r.part} FAILED: ${f.split("\n")[0]}\n`);
}
writeFileSync(
  values.out,
  `${JSON.stringify({ date: new Date().toISOString(), seed, sizes, machine, loadAtEnd: load(), sharedDataDir, results }, null, 2)}\n`,
);
process.stdout.write(`wrote ${values.out}\n`);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
