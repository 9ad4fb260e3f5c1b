import { join } from "node:path";
import { type Chart, intervalChart, writeChart } from "../util/chart.js";
import { ARMS } from "./plan.js";
import { type ReproduceReport, SPLIT_NAMES } from "./report.js";

/** The report's charts (SVG and PNG each): the arms with their intervals, and the two steering curves. */
export async function writePlots(dir: string, r: ReproduceReport): Promise<string[]> {
  const charts: Record<string, Chart> = {
    "arms-quality": await intervalChart({
      title: "Oracle quality per arm (mean, 95% CI)",
      x: "arm",
      y: "quality (0-4)",
      points: ARMS.flatMap((arm) =>
        SPLIT_NAMES.map((split) => {
          const e = r.arms[arm].splits[split].attributes.quality;
          return { x: arm, y: e?.mean ?? Number.NaN, low: e?.ci[0] ?? 0, high: e?.ci[1] ?? 0, series: split };
        }),
      ),
    }),
    "arms-reference": await intervalChart({
      title: "% of the generator's reference (total quality ratio, 95% CI)",
      x: "arm",
      y: "% of reference",
      points: ARMS.flatMap((arm) =>
        SPLIT_NAMES.map((split) => {
          const e = r.arms[arm].splits[split].reference;
          return { x: arm, y: e.mean, low: e.ci[0], high: e.ci[1], series: split };
        }),
      ),
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

function curvePoints(r: ReproduceReport, attribute: string, what: "measured" | "lengthChars") {
  const c = r.steering[attribute];
  if (!c) return [];
  return c.levels.map((level, i) => {
    const e = c[what][i];
    return { x: level, y: e?.mean ?? Number.NaN, low: e?.ci[0] ?? 0, high: e?.ci[1] ?? 0, series: "acsft" };
  });
}
