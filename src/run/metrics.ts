import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.js";
import type { Chart } from "../util/chart.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";

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

/**
 * The metrics a run wrote so far (none for a new run directory). The file is replaced atomically, but one
 * written by an older steerlm that was killed mid-write ends in a torn line: that line is dropped (the
 * resumed run writes the file whole again); a damaged line before the last is a located error.
 */
export function readMetrics<M extends RunMetric>(runDir: string): M[] {
  const path = join(runDir, METRICS_FILE);
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, "utf8").split("\n");
  const out: M[] = [];
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    const value = parseObject(line);
    if (value !== undefined) {
      out.push(value as M);
      continue;
    }
    const last = lines.slice(i + 1).every((l) => l.trim() === "");
    if (!last)
      throw new InputError("not a JSON object", { file: path, line: i + 1 }, "restore the file or delete it");
    log.warn(`${path}:${i + 1}: the last line is cut off (a run was killed while writing it): dropped`);
  }
  return out;
}

function parseObject(line: string): object | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export function writeMetrics(runDir: string, metrics: readonly RunMetric[]): void {
  writeFileAtomic(join(runDir, METRICS_FILE), metrics.map((m) => `${JSON.stringify(m)}\n`).join(""));
}

/** Training loss (a line) and validation loss (points joined by a line) against the optimiser step. */
export async function lossCurve(metrics: readonly RunMetric[]): Promise<Chart> {
  const series = [{ name: "training", points: metrics.map((m) => ({ x: m.step, y: m.loss })) }];
  const val = metrics.filter((m) => m.valLoss !== undefined);
  if (val.length > 0)
    series.push({ name: "validation", points: val.map((m) => ({ x: m.step, y: m.valLoss as number })) });
  // Loaded when the first checkpoint is drawn: vega costs a quarter of a second that `--help` and a
  // run's start should not pay.
  const { lineChart } = await import("../util/chart.js");
  return lineChart({ title: "Loss", x: "optimiser step", y: "loss (per loss token)", series });
}

export async function writeLossCurve(runDir: string, metrics: readonly RunMetric[]): Promise<void> {
  const chart = await lossCurve(metrics);
  writeFileAtomic(join(runDir, LOSS_CURVE_FILE), chart.png);
  writeFileAtomic(join(runDir, LOSS_CURVE_FILE.replace(/\.png$/, ".svg")), chart.svg);
}
