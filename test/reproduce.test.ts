import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { STEERLM_ATTRIBUTE_ORDER } from "../src/data/attributes.js";
import { type ReproduceReport, runReproduce } from "../src/reproduce/index.js";
import { ARMS, PLAIN_ARMS } from "../src/reproduce/plan.js";
import { scoreFile } from "../src/steerbench/score.js";
import { TINY_REPRODUCE, TINY_SEEDS } from "./fixtures/reproduce-tiny.js";
import { repoRoot, tempDir } from "./helpers.js";

// The study end to end at a tiny size (REPRODUCE_PLANS has the real ones; README has the full run's
// figures): six arms trained, annotated and bootstrapped by the library calls of their commands, judged,
// steered, reported. Untrained models: the figures are noise; the shape and the bookkeeping are checked.
// Two seeds: the straight run does them one after the other (jobs 1), the killed one side by side (jobs 2),
// and both must report the same figures.
const withoutTime = (r: ReproduceReport) => ({ ...r, time: undefined });

describe("steerlm reproduce", () => {
  const tmp = tempDir("steerlm-reproduce-");
  afterAll(() => tmp.cleanup());
  const straight = join(tmp.path, "straight");
  let report: ReproduceReport;

  it("writes report.json, report.md, charts and every arm's generations", async () => {
    report = await runReproduce({
      dir: straight,
      plan: TINY_REPRODUCE,
      seeds: TINY_SEEDS,
      jobs: 1,
      progress: false,
    });
    const json = JSON.parse(readFileSync(join(straight, "report.json"), "utf8")) as ReproduceReport;
    expect(Object.keys(json.arms)).toEqual([...ARMS]);
    for (const arm of ARMS) {
      for (const split of ["test", "heldout"] as const) {
        const s = json.arms[arm].splits[split];
        expect(s.n).toBe(TINY_SEEDS.length * TINY_REPRODUCE.judgePrompts);
        expect(Object.keys(s.attributes)).toEqual([...STEERLM_ATTRIBUTE_ORDER]);
        const q = s.attributes.quality;
        expect(q?.perSeed).toHaveLength(TINY_SEEDS.length);
        expect(q?.ci[0]).toBeLessThanOrEqual(q?.mean as number);
        expect(q?.ci[1]).toBeGreaterThanOrEqual(q?.mean as number);
        expect(s.reference.win + s.reference.tie + s.reference.loss).toBe(s.n);
      }
    }
    expect(json.arms.sft.asked).toEqual([null, null]);
    expect(json.arms.acsft.asked[0]).toMatch(/^quality:4,.*helpfulness:4,/);
    expect(Object.keys(json.steering)).toEqual(["toxicity", "verbosity", "quality", "helpfulness"]);
    expect(json.steering.toxicity?.levels).toEqual([0, 1, 2, 3, 4]);
    for (const seed of TINY_SEEDS)
      expect(json.time.stages[`seed-${seed}/train acsft`]?.cpuSeconds).toBeGreaterThan(0);
    expect(json.time.elapsed).toBeGreaterThan(0);
    const md = readFileSync(join(straight, "report.md"), "utf8");
    expect(md).toMatch(/ s elapsed, \d seed\(s\) at a time/);
    expect(md).toMatch(/^\| acsft-apm-more \| /m);
    for (const chart of ["arms-quality", "arms-reference", "steer-toxicity", "steer-verbosity"]) {
      expect(
        readFileSync(join(straight, `${chart}.png`))
          .subarray(1, 4)
          .toString("latin1"),
      ).toBe("PNG");
      expect(readFileSync(join(straight, `${chart}.svg`), "utf8")).toContain("</svg>");
    }
    expect(readFileSync(join(straight, "steer-toxicity.svg"), "utf8")).toContain(
      ">requested toxicity</text>",
    );
  }, 900_000);

  it("generations carry the value string asked for and re-score to the report's means", async () => {
    for (const arm of ARMS) {
      const file = join(straight, "generations", `${arm}.jsonl`);
      const rows = readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(rows).toHaveLength(2 * TINY_SEEDS.length * TINY_REPRODUCE.judgePrompts);
      for (const row of rows) expect(row.conversations[1].label === null, arm).toBe(PLAIN_ARMS.includes(arm));
      const { summary } = await scoreFile(file);
      for (const a of STEERLM_ATTRIBUTE_ORDER)
        expect(summary.mean[a]).toBeCloseTo(report.arms[arm].all.mean[a] as number, 12);
    }
  });

  it("runs seeds side by side; after a SIGKILL of the parent its seeds stop, and --resume reports the same", async () => {
    const dir = join(tmp.path, "killed");
    const ckpt = join(dir, "seed-1", "runs", "acsft-apm", "checkpoints", "step-000003.ckpt");
    let seedPids: number[] = [];
    const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", join(repoRoot, "test/fixtures/reproduce-tiny.ts"), dir],
        { stdio: "ignore" },
      );
      const poll = setInterval(() => {
        if (existsSync(ckpt)) {
          clearInterval(poll);
          seedPids = childPids(child.pid as number);
          child.kill("SIGKILL");
        }
      }, 10);
      child.on("error", reject);
      child.on("exit", (_code, sig) => {
        clearInterval(poll);
        resolve(sig);
      });
    });
    expect(signal).toBe("SIGKILL");
    // both seeds were running, each in its own process, and they go when their parent is killed
    expect(seedPids).toHaveLength(TINY_SEEDS.length);
    while (seedPids.some(alive)) await new Promise((r) => setTimeout(r, 50));
    const state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8"));
    expect(Object.keys(state.done)).toContain("seed-1/annotate");
    expect(Object.keys(state.done)).not.toContain("seed-1/train acsft-apm");
    const again = { dir, plan: TINY_REPRODUCE, seeds: TINY_SEEDS, jobs: 2, progress: false };
    await expect(runReproduce(again)).rejects.toThrow(/already holds a reproduce run/);
    const resumed = await runReproduce({ ...again, resume: true });
    expect(withoutTime(resumed)).toEqual(withoutTime(report));
    for (const arm of [...ARMS, "steer-acsft"])
      expect(readFileSync(join(dir, "generations", `${arm}.jsonl`), "utf8")).toBe(
        readFileSync(join(straight, "generations", `${arm}.jsonl`), "utf8"),
      );
  }, 900_000);
});

/** The seed processes whose parent is `pid` (runIsolated's child entry; tsx has an esbuild child too). */
function childPids(pid: number): number[] {
  return execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(pid)], { encoding: "utf8" })
    .split("\n")
    .filter((l) => /src\/train\/child\.ts/.test(l))
    .map((l) => Number.parseInt(l.trim(), 10));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
