import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Chart, lineChart } from "../util/chart.js";

/** A run directory's per-step log (SFT and APM runs): one JSON object a line. */
export const METRICS_FILE = "metrics.jsonl";
/** The training and validation loss curves of a run directory (loss.png, and loss.svg beside it). */
export const LOSS_CURVE_FILE = "loss.png";

/** What every run logs at a step; runs may add fields (SFT adds `tokens`). */
export interface RunMetric {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  valLoss?: number;
}

/** The metrics a run wrote so far (none for a new run directory). */
export function readMetrics<M extends RunMetric>(runDir: string): M[] {
  const path = join(runDir, METRICS_FILE);
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as M);
}

export function writeMetrics(runDir: string, metrics: readonly RunMetric[]): void {
  writeFileSync(join(runDir, METRICS_FILE), metrics.map((m) => `${JSON.stringify(m)}\n`).join(""));
}

/** Training loss (a line) and validation loss (points joined by a line) against the optimiser step. */
export function lossCurve(metrics: readonly RunMetric[]): Promise<Chart> {
  const series = [{ name: "training", points: metrics.map((m) => ({ x: m.step, y: m.loss })) }];
  const val = metrics.filter((m) => m.valLoss !== undefined);
  if (val.length > 0)
    series.push({ name: "validation", points: val.map((m) => ({ x: m.step, y: m.valLoss as number })) });
  return lineChart({ title: "Loss", x: "optimiser step", y: "loss (per loss token)", series });
}

export async function writeLossCurve(runDir: string, metrics: readonly RunMetric[]): Promise<void> {
  const chart = await lossCurve(metrics);
  writeFileSync(join(runDir, LOSS_CURVE_FILE), chart.png);
  writeFileSync(join(runDir, LOSS_CURVE_FILE.replace(/\.png$/, ".svg")), chart.svg);
}
