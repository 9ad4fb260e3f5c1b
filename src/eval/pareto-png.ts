import { Canvas } from "../run/png.js";
import type { ParetoReport } from "./pareto.js";

/**
 * The Pareto plot: every grid point's measured means (grey), the front (blue, joined), the hypervolume's
 * reference corner at the origin of the axes; x and y span the two attributes' scales, with a tick at
 * each integer. Drawn with the PNG canvas of src/sft/png.ts (digits only: the axis names are in the JSON
 * and the table).
 */
const GREY = [150, 150, 150] as const;
const LIGHT = [225, 225, 225] as const;
const BLUE = [31, 119, 180] as const;
const BLACK = [0, 0, 0] as const;

export function paretoPng(
  r: ParetoReport,
  scales: readonly [readonly [number, number], readonly [number, number]],
  size = 420,
): Buffer {
  const c = new Canvas(size, size);
  const [left, right, top, bottom] = [36, size - 14, 14, size - 30];
  const [[x0, x1], [y0, y1]] = scales;
  // A margin of 4 % of each scale, so points at its ends are not cut by the axes or the border.
  const [px, py] = [0.04 * (x1 - x0 || 1), 0.04 * (y1 - y0 || 1)];
  const X = (v: number) => left + ((right - left) * (v - x0 + px)) / (x1 - x0 + 2 * px);
  const Y = (v: number) => bottom - ((bottom - top) * (v - y0 + py)) / (y1 - y0 + 2 * py);
  for (let v = Math.ceil(x0); v <= x1; v++) {
    c.line(X(v), top, X(v), bottom, LIGHT);
    c.text(X(v) - 2 * String(v).length, bottom + 8, String(v), BLACK);
  }
  for (let v = Math.ceil(y0); v <= y1; v++) {
    c.line(left, Y(v), right, Y(v), LIGHT);
    c.text(left - 6 - 4 * String(v).length, Y(v) - 2, String(v), BLACK);
  }
  c.line(left, top, left, bottom, BLACK);
  c.line(left, bottom, right, bottom, BLACK);
  for (const p of r.points) c.dot(X(p.measured[0]), Y(p.measured[1]), GREY);
  r.front.forEach((p, i) => {
    const prev = r.front[i - 1];
    if (prev) c.line(X(prev.measured[0]), Y(prev.measured[1]), X(p.measured[0]), Y(p.measured[1]), BLUE);
    c.dot(X(p.measured[0]), Y(p.measured[1]), BLUE);
  });
  return c.png();
}
