import { type Command, Option } from "commander";
import { InputError, type SteerlmError } from "../util/errors.js";
import { checkNumber, type NumberRange } from "../util/numbers.js";

/** Parsed commander options: a flag's text or number, a boolean switch, or absent. */
export type Flags = Record<string, string | number | boolean | undefined>;

/** The one grammar of numeric flags: decimal, optionally signed, with an optional fraction and exponent. */
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A number flag's text as a number in `range`; errors name `flag` and quote the text as typed. */
export function parseNumberFlag(text: string, range: NumberRange, flag: string): number {
  const value = NUMBER.test(text.trim()) ? Number(text) : Number.NaN;
  return checkNumber(value, range, { field: flag }, text);
}

/** `0..4`, `0..4:0.1` (a step; fractions are mixed) or `0,2,4.5`. */
export function parseLevels(text: string): number[] {
  const flag = "--levels";
  const range = /^(\d+(?:\.\d+)?)\.\.(\d+(?:\.\d+)?)(?::(.+))?$/.exec(text);
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    const step = range[3] === undefined ? 1 : parseNumberFlag(range[3], { above: 0 }, flag);
    if (a > b) throw new InputError(`empty range ${text}`, { field: flag });
    // Counted, not accumulated, and rounded to the step's decimals: 0.1 steps give 0.3, not 0.30000000000000004.
    const decimals = Math.max(...[range[1], range[3]].map((t) => (t?.split(".")[1] ?? "").length));
    const n = Math.floor((b - a) / step + 1e-9);
    return Array.from({ length: n + 1 }, (_, i) => Number((a + i * step).toFixed(decimals)));
  }
  return text.split(",").map((t) => parseNumberFlag(t.trim(), { min: 0 }, flag));
}

/** Whole numbers from `min` up. */
export const integerFrom = (min: number): NumberRange => ({ integer: true, min });

/** A commander option whose value is parsed as a number in `range` (a number default is used as is). */
export function numberOption(flags: string, help: string, range: NumberRange, fallback?: number): Option {
  const option = new Option(flags, help);
  option.argParser((text: string) => parseNumberFlag(text, range, option.long ?? option.flags));
  if (fallback !== undefined) option.default(fallback);
  return option;
}

/** `flags[key]` when it is text. */
export const strFlag = (flags: Flags, key: string): string | undefined =>
  typeof flags[key] === "string" ? flags[key] : undefined;

/** `flags[key]` when it is a number (options made by `numberOption`). */
export const numFlag = (flags: Flags, key: string): number | undefined =>
  typeof flags[key] === "number" ? flags[key] : undefined;

/** Options whose setting is not their attribute name (`--compute` sets computeType). */
const settingOf = new WeakMap<Option, string>();

/** Declares that `option` sets `setting`, for an option whose flag is not the setting's kebab-case name. */
export function optionForSetting(option: Option, setting: string): Option {
  if (option.attributeName() !== setting) settingOf.set(option, setting);
  return option;
}

/**
 * An error as the user of `command` should read it. Library errors name a setting (`batchSize`), never a
 * flag; the option of the running command for that setting says which flag the user typed
 * (`--batch-size`). The only place settings become flags.
 */
export function forUser(err: SteerlmError, command: Command | undefined): SteerlmError {
  const setting = err instanceof InputError ? err.place.setting : undefined;
  if (setting === undefined || command === undefined) return err;
  const option = command.options.find((o) => (settingOf.get(o) ?? o.attributeName()) === setting);
  return option?.long ? (err as InputError).showSettingAs(option.long) : err;
}
