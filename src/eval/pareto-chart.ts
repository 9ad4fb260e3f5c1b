import { type Chart, renderChart } from "../util/chart.js";
import type { ParetoReport } from "./pareto.js";

/**
 * The Pareto plot: every grid point's measured means (grey), the front (blue, joined), on the two
 * attributes' scales with a margin of 4 % so points at a scale's end are not cut by the axes.
 */
export function paretoChart(
  r: ParetoReport,
  scales: readonly [readonly [number, number], readonly [number, number]],
): Promise<Chart> {
  const domain = ([lo, hi]: readonly [number, number]) => {
    const m = 0.04 * (hi - lo || 1);
    return [lo - m, hi + m];
  };
  const [xName, yName] = r.attributes;
  const row = (p: ParetoReport["points"][number]) => ({ x: p.measured[0], y: p.measured[1] });
  const encoding = {
    x: {
      field: "x",
      type: "quantitative",
      title: `${xName} (measured)`,
      scale: { domain: domain(scales[0]) },
    },
    y: {
      field: "y",
      type: "quantitative",
      title: `${yName} (measured)`,
      scale: { domain: domain(scales[1]) },
    },
  } as const;
  return renderChart({
    title: `Pareto front: ${xName} vs ${yName} (guidance ${r.guidance})`,
    width: 420,
    height: 420,
    layer: [
      { data: { values: r.points.map(row) }, mark: { type: "point", color: "#969696" }, encoding },
      {
        data: { values: r.front.map(row) },
        mark: { type: "line", point: true, color: "#1f77b4" },
        encoding: { ...encoding, order: { field: "x", type: "quantitative" } },
      },
    ],
  });
}
