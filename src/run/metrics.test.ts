import { mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { METRICS_FILE, type RunMetric, readMetrics, writeMetrics } from "./metrics.js";

const tmp = tempDir("steerlm-metrics-");
afterAll(() => tmp.cleanup());

const metrics: RunMetric[] = Array.from({ length: 5 }, (_, i) => ({
  step: i + 1,
  loss: 2 - i / 10,
  lr: 1e-3,
  gradNorm: 0.5,
}));

function run(name: string): string {
  const dir = join(tmp.path, name);
  mkdirSync(dir);
  writeMetrics(dir, metrics);
  return dir;
}

describe("metrics.jsonl", () => {
  it("round-trips", () => {
    expect(readMetrics(run("whole"))).toEqual(metrics);
  });

  it("a torn last line (a kill in the middle of a write) is dropped: the lines before it are the run's", () => {
    const dir = run("torn");
    const path = join(dir, METRICS_FILE);
    const size = readFileSync(path).length;
    for (const cut of [size - 2, size - 20]) {
      truncateSync(path, cut);
      expect(readMetrics(dir)).toEqual(metrics.slice(0, 4));
    }
  });

  it("a damaged line before the last is a located error", () => {
    const dir = run("damaged");
    const path = join(dir, METRICS_FILE);
    const lines = readFileSync(path, "utf8").split("\n");
    lines[1] = '{"step": 2, "loss"';
    writeFileSync(path, lines.join("\n"));
    expect(() => readMetrics(dir)).toThrow(`${path}:2: not a JSON object`);
  });
});
