import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LossPoint, lossCurvePng } from "./png.js";

/** A run directory's per-step log (SFT and APM runs): one JSON object a line. */
export const METRICS_FILE = "metrics.jsonl";
/** The training (blue) and validation (orange) loss curves of a run directory. */
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

export function writeLossCurve(runDir: string, metrics: readonly RunMetric[]): void {
  const train: LossPoint[] = metrics.map((m) => ({ step: m.step, loss: m.loss }));
  const val: LossPoint[] = metrics
    .filter((m) => m.valLoss !== undefined)
    .map((m) => ({ step: m.step, loss: m.valLoss as number }));
  writeFileSync(join(runDir, LOSS_CURVE_FILE), lossCurvePng(train, val));
}
