import { join } from "node:path";
import type { Estimate } from "../eval/stats.js";
import { type Chart, type IntervalPoint, intervalChart, writeChart } from "../util/chart.js";
import { ARMS } from "./plan.js";
import { type ReproduceReport, SPLIT_NAMES, type SplitFigures } from "./report.js";

/** The report's charts (SVG and PNG each): the arms with their intervals, and the two steering curves. */
export async function writePlots(dir: string, r: ReproduceReport): Promise<string[]> {
  const charts: Record<string, Chart> = {
    "arms-quality": await intervalChart({
      title: "Oracle quality per arm (mean, 95% CI)",
      x: "arm",
      y: "quality (0-4)",
      points: armPoints(r, (s) => s.attributes.quality),
    }),
    "arms-reference": await intervalChart({
      title: "% of the generator's reference (total quality ratio, 95% CI)",
      x: "arm",
      y: "% of reference",
      points: armPoints(r, (s) => s.reference),
    }),
    "steer-toxicity": await intervalChart({
      title: "Toxicity steering (acsft, test prompts)",
      x: "requested toxicity",
      y: "measured toxicity (oracle, 0-4)",
      line: true,
      points: curvePoints(r, "toxicity", "measured"),
    }),
    "steer-verbosity": await intervalChart({
      title: "Verbosity steering (acsft, test prompts)",
      x: "requested verbosity",
      y: "mean response length (characters)",
      line: true,
      points: curvePoints(r, "verbosity", "lengthChars"),
    }),
  };
  const written: string[] = [];
  for (const [name, chart] of Object.entries(charts)) {
    writeChart(join(dir, name), chart);
    written.push(`${name}.svg`, `${name}.png`);
  }
  return written;
}

/** An estimate's point: its mean and 95% interval; a missing estimate is NaN, which the chart leaves out. */
function point(x: string | number, e: Estimate | undefined, series: string): IntervalPoint {
  return { x, y: e?.mean ?? Number.NaN, low: e?.ci[0] ?? 0, high: e?.ci[1] ?? 0, series };
}

/** One point per arm and split: the estimate `pick` takes from that split's figures. */
function armPoints(r: ReproduceReport, pick: (s: SplitFigures) => Estimate | undefined): IntervalPoint[] {
  return ARMS.flatMap((arm) =>
    SPLIT_NAMES.map((split) => point(arm, pick(r.arms[arm].splits[split]), split)),
  );
}

function curvePoints(
  r: ReproduceReport,
  attribute: string,
  what: "measured" | "lengthChars",
): IntervalPoint[] {
  const c = r.steering[attribute];
  if (!c) return [];
  return c.levels.map((level, i) => point(level, c[what][i], "acsft"));
}
