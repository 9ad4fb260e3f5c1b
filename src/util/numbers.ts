import { describe, InputError, type Place } from "./errors.js";

/**
 * A numeric setting's range, said one way everywhere: the CLI's number flags, the library's sampling
 * options and the server's request fields all check and describe their numbers through here.
 */
export interface NumberRange {
  integer?: boolean;
  min?: number;
  /** Exclusive lower bound (`--tolerance` must be above 0). */
  above?: number;
  max?: number;
}

/** "an integer in 0..4", "a positive integer", "a number ≥ 0", "a positive number", "a number". */
export function rangeText(r: NumberRange): string {
  const kind = r.integer ? "an integer" : "a number";
  if (r.min !== undefined && r.max !== undefined) return `${kind} in ${r.min}..${r.max}`;
  if ((r.integer && r.min === 1) || r.above === 0)
    return r.integer ? "a positive integer" : "a positive number";
  if (r.min !== undefined) return `${kind} ≥ ${r.min}`;
  if (r.above !== undefined) return `${kind} > ${r.above}`;
  if (r.max !== undefined) return `${kind} ≤ ${r.max}`;
  return kind;
}

export function inRange(v: number, r: NumberRange): boolean {
  return (
    Number.isFinite(v) &&
    (!r.integer || Number.isInteger(v)) &&
    (r.min === undefined || v >= r.min) &&
    (r.above === undefined || v > r.above) &&
    (r.max === undefined || v <= r.max)
  );
}

/**
 * A value that must be a number in `r`: returned as is, else an InputError at `place` that quotes `given`
 * (what the user wrote, when the value was parsed from text).
 */
export function checkNumber(value: unknown, r: NumberRange, place: Place, given: unknown = value): number {
  if (typeof value !== "number" || !inRange(value, r))
    throw new InputError(`expected ${rangeText(r)}, got ${describe(given)}`, place);
  return value;
}

/** The q-quantile (0..1) of sorted values, linearly interpolated; NaN for none. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/** softmax of xs, the maximum subtracted first (log-likelihoods of long texts are in the hundreds). */
export function softmax(xs: readonly number[]): number[] {
  const max = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
