import type { Generator } from "../inference/generator.js";
import { InputError } from "../util/errors.js";
import { sweepPlan } from "./adherence.js";
import { runSweep, type SweepOptions } from "./sweep.js";

/**
 * Pareto fronts over two attributes (as Rewards-in-Context evaluates multi-objective steering): every
 * point of a grid of requested values (a, b), the others at their defaults, generated on the prompts and
 * measured; the measured means of the non-dominated points (both attributes maximised) form the front,
 * summarised by its hypervolume against the worst corner of the scales.
 */
export interface ParetoOptions extends Omit<SweepOptions, "model" | "label"> {
  model: Pick<Generator, "generate" | "schema">;
  prompts: ReadonlyArray<{ prompt: string; system: string }>;
  /** The two attributes, x then y. */
  attributes: readonly [string, string];
  /** Values requested for each of the two (default: each one's integers); fractions are mixed. */
  levels?: readonly number[];
}

export interface ParetoPoint {
  requested: [number, number];
  /** Mean measured values over the prompts. */
  measured: [number, number];
}

export interface ParetoReport {
  attributes: [string, string];
  guidance: number;
  points: ParetoPoint[];
  /** The non-dominated points, by measured x ascending. */
  front: ParetoPoint[];
  /** The corner the hypervolume is measured from: each scale's minimum. */
  reference: [number, number];
  hypervolume: number;
  /** The hypervolume as a share of the whole box of the two scales (1: the ideal corner reached). */
  hypervolumeShare: number;
  prompts: number;
  generations: number;
  seconds: number;
}

export async function paretoSweep(opts: ParetoOptions): Promise<ParetoReport> {
  const t0 = performance.now();
  const [a, b] = opts.attributes;
  if (a === b)
    throw new InputError(`the two attributes must differ, got ${a} twice`, { setting: "attributes" });
  const plan = sweepPlan(opts.model.schema, [a, b], opts.levels);
  const levelsOf = (name: string) => (plan.find((p) => p.attribute === name)?.levels ?? []) as number[];
  const grid = levelsOf(a).flatMap((x) => levelsOf(b).map((y): [number, number] => [x, y]));
  const jobs = grid.flatMap(([x, y]) => opts.prompts.map((p) => ({ attributes: { [a]: x, [b]: y }, ...p })));
  const sweep = await runSweep(jobs, { ...opts, label: "pareto" });
  const n = opts.prompts.length;
  const points = grid.map(([x, y], g): ParetoPoint => {
    const mine = sweep.results.slice(g * n, (g + 1) * n);
    const mean = (name: string) => mine.reduce((s, r) => s + measuredValue(r.measured, name), 0) / n;
    return { requested: [x, y], measured: [mean(a), mean(b)] };
  });
  const defs = [a, b].map((name) => opts.model.schema.attributes.find((d) => d.name === name));
  const reference: [number, number] = [defs[0]?.min ?? 0, defs[1]?.min ?? 0];
  const box = ((defs[0]?.max ?? 1) - reference[0]) * ((defs[1]?.max ?? 1) - reference[1]);
  const front = paretoFront(points);
  const hypervolume = hypervolume2d(front, reference);
  return {
    attributes: [a, b],
    guidance: opts.guidance ?? 0,
    points,
    front,
    reference,
    hypervolume,
    hypervolumeShare: box > 0 ? hypervolume / box : Number.NaN,
    prompts: n,
    generations: jobs.length,
    seconds: (performance.now() - t0) / 1000,
  };
}

function measuredValue(measured: Record<string, number>, name: string): number {
  const v = measured[name];
  if (typeof v !== "number") throw new InputError(`the measurer gave no value for ${name}`, { field: name });
  return v;
}

/** The points no other point dominates (both coordinates maximised), by x ascending. */
export function paretoFront(points: readonly ParetoPoint[]): ParetoPoint[] {
  const [x, y] = [(p: ParetoPoint) => p.measured[0], (p: ParetoPoint) => p.measured[1]];
  const dominated = (p: ParetoPoint) =>
    points.some((q) => x(q) >= x(p) && y(q) >= y(p) && (x(q) > x(p) || y(q) > y(p)));
  return points.filter((p) => !dominated(p)).sort((p, q) => x(p) - x(q));
}

/** Area dominated by a front (x ascending, so y descending) and bounded below by `reference`. */
export function hypervolume2d(front: readonly ParetoPoint[], reference: readonly [number, number]): number {
  let area = 0;
  let left = reference[0];
  for (const p of front) {
    const [px, py] = p.measured;
    if (px <= left || py <= reference[1]) continue;
    area += (px - left) * (py - reference[1]);
    left = px;
  }
  return area;
}

/** The table `steerlm eval pareto` prints: each grid point, the front marked with *. */
export function formatPareto(r: ParetoReport): string {
  const [a, b] = r.attributes;
  const onFront = new Set(r.front.map((p) => p.requested.join(",")));
  const w = Math.max(a.length, b.length, 6);
  const lines = [
    `Pareto sweep of ${a} × ${b}${r.guidance ? ` (guidance ${r.guidance})` : ""}: measured means over ${r.prompts} prompts; * on the front`,
    `  ${`req ${a}`.padStart(w + 4)}  ${`req ${b}`.padStart(w + 4)}  ${a.padStart(w)}  ${b.padStart(w)}`,
  ];
  for (const p of r.points) {
    const mark = onFront.has(p.requested.join(",")) ? "*" : " ";
    lines.push(
      `${mark} ${String(p.requested[0]).padStart(w + 4)}  ${String(p.requested[1]).padStart(w + 4)}  ${p.measured[0].toFixed(2).padStart(w)}  ${p.measured[1].toFixed(2).padStart(w)}`,
    );
  }
  lines.push(
    `front: ${r.front.length} points, hypervolume ${r.hypervolume.toFixed(3)} (${(100 * r.hypervolumeShare).toFixed(1)}% of the box from (${r.reference.join(", ")})); ${r.generations} generations in ${r.seconds.toFixed(1)} s`,
  );
  return lines.join("\n");
}
