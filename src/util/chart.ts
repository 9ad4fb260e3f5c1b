import { existsSync } from "node:fs";
import { Resvg } from "@resvg/resvg-js";
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { writeFileAtomic } from "./atomic.js";
import { InputError } from "./errors.js";

/**
 * Every chart steerlm draws: a Vega-Lite spec, compiled by vega-lite, rendered to SVG by vega's headless
 * view and rasterised to PNG by resvg with one font file. resvg reads no system fonts here, so the PNG is
 * the same on every machine that has the file (Debian: fonts-dejavu-core).
 */

export const CHART_FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_FAMILY = "DejaVu Sans";

export interface Chart {
  svg: string;
  png: Buffer;
}

/** One labelled series of (x, y) points. */
export interface ChartSeries {
  name: string;
  points: ReadonlyArray<{ x: number; y: number }>;
}

export interface LineChartOptions {
  title: string;
  /** Axis titles. */
  x: string;
  y: string;
  series: readonly ChartSeries[];
  /** "line" joins the points; "point" marks them; "line+point" does both (default "line"). */
  mark?: "line" | "point" | "line+point";
  width?: number;
  height?: number;
}

/** A line or scatter chart of several series, one colour each, with a legend. */
export async function lineChart(opts: LineChartOptions): Promise<Chart> {
  const values = opts.series.flatMap((s) =>
    s.points.filter((p) => Number.isFinite(p.y)).map((p) => ({ series: s.name, x: p.x, y: p.y })),
  );
  const mark = opts.mark ?? "line";
  const encoding = {
    x: { field: "x", type: "quantitative", title: opts.x },
    y: { field: "y", type: "quantitative", title: opts.y, scale: { zero: false } },
    color: { field: "series", type: "nominal", title: null, sort: opts.series.map((s) => s.name) },
  } as const;
  return renderChart({
    title: opts.title,
    width: opts.width ?? 560,
    height: opts.height ?? 320,
    data: { values },
    mark: mark === "line+point" ? { type: "line", point: true } : { type: mark },
    encoding,
  });
}

/** One estimate with its interval, in a series. */
export interface IntervalPoint {
  /** A category (ordinal axis, in the order given) or a number. */
  x: string | number;
  y: number;
  low: number;
  high: number;
  series: string;
}

export interface IntervalChartOptions {
  title: string;
  x: string;
  y: string;
  points: readonly IntervalPoint[];
  /** Join each series' points with a line (curves); default: points only (categories). */
  line?: boolean;
  width?: number;
  height?: number;
}

/** Means with error bars (e.g. 95% confidence intervals), one colour per series, with a legend. */
export async function intervalChart(opts: IntervalChartOptions): Promise<Chart> {
  const values = opts.points.filter((p) => Number.isFinite(p.y));
  const categorical = values.some((p) => typeof p.x === "string");
  const order = [...new Set(values.map((p) => p.x))];
  const seriesOrder = [...new Set(values.map((p) => p.series))];
  const x = categorical
    ? { field: "x", type: "nominal", title: opts.x, sort: order, axis: { labelAngle: -30 } }
    : { field: "x", type: "ordinal", title: opts.x, axis: { labelAngle: 0 } };
  const color = { field: "series", type: "nominal", title: null, sort: seriesOrder };
  // series side by side within a category, so their bars do not hide each other
  const offset = seriesOrder.length > 1 ? { xOffset: { field: "series", sort: seriesOrder } } : {};
  return renderChart({
    title: opts.title,
    width: opts.width ?? 480,
    height: opts.height ?? 300,
    data: { values },
    encoding: { x, color, ...offset },
    layer: [
      {
        mark: { type: "rule", strokeWidth: 2 },
        encoding: {
          y: { field: "low", type: "quantitative", title: opts.y, scale: { zero: false } },
          y2: { field: "high" },
        },
      },
      {
        mark: opts.line
          ? { type: "line", point: { filled: true, size: 60 } }
          : { type: "point", filled: true, size: 60 },
        encoding: { y: { field: "y", type: "quantitative" } },
      },
    ],
  } as TopLevelSpec);
}

/** Any Vega-Lite spec as SVG and PNG (white background, the chart font). */
export async function renderChart(spec: TopLevelSpec, scale = 2): Promise<Chart> {
  if (!existsSync(CHART_FONT_FILE))
    throw new InputError(
      "charts need the DejaVu Sans font",
      { file: CHART_FONT_FILE },
      "install it: apt-get install fonts-dejavu-core",
    );
  const themed = {
    background: "white",
    padding: 8,
    ...spec,
    config: { font: FONT_FAMILY, ...spec.config },
  } as TopLevelSpec;
  const view = new View(parse(compile(themed).spec), { renderer: "none" });
  try {
    const svg = await view.toSVG();
    const png = new Resvg(svg, {
      fitTo: { mode: "zoom", value: scale },
      font: { fontFiles: [CHART_FONT_FILE], loadSystemFonts: false, defaultFontFamily: FONT_FAMILY },
    })
      .render()
      .asPng();
    return { svg, png };
  } finally {
    view.finalize();
  }
}

/** Writes `<base>.svg` and `<base>.png`. */
export function writeChart(base: string, chart: Chart): void {
  writeFileAtomic(`${base}.svg`, chart.svg);
  writeFileAtomic(`${base}.png`, chart.png);
}
