import { InputError } from "../util/errors.js";

/** Parsed commander options: a flag's text, a boolean switch, or absent. */
export type Flags = Record<string, string | boolean | undefined>;

/** `flags[key]` as an integer ≥ min (undefined when absent); `flag` names it in the error. */
export function intFlag(flags: Flags, key: string, flag: string, min: number): number | undefined {
  const text = flags[key];
  if (typeof text !== "string") return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min)
    throw new InputError(`expected an integer ≥ ${min}, got ${JSON.stringify(text)}`, { field: flag });
  return Number(text);
}

/** `flags[key]` as a finite number (undefined when absent). */
export function numFlag(flags: Flags, key: string, flag: string): number | undefined {
  const text = flags[key];
  if (typeof text !== "string") return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n))
    throw new InputError(`expected a number, got ${JSON.stringify(text)}`, { field: flag });
  return n;
}

/** `flags[key]` when it is text. */
export const strFlag = (flags: Flags, key: string): string | undefined =>
  typeof flags[key] === "string" ? flags[key] : undefined;
