/**
 * The YAML of a job's config files: block mappings, flow lists of scalars, block lists of mappings, and
 * scalars that PyYAML (TRL), OmegaConf (NeMo RL, NeMo-Aligner) and the `yaml` package read back as the same
 * values. Written here rather than with `yaml`'s stringifier because PyYAML follows YAML 1.1, where `1e-8`
 * (no dot, no exponent sign) is a string: every non-integer number is written as `1.0e-8`.
 */

export type YamlValue =
  | string
  | number
  | boolean
  | null
  | YamlFloat
  | YamlValue[]
  | { [key: string]: YamlValue };

/** A number written as a float even when it is whole (`1.0`): Lightning reads `limit_val_batches: 1` as one batch. */
export class YamlFloat {
  constructor(readonly value: number) {}
}

export const float = (x: number): YamlFloat => new YamlFloat(x);

/** A number PyYAML reads as the same int or float. */
export function yamlNumber(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`yamlNumber: ${x} has no YAML form the engines share`);
  const text = String(x);
  const exp = /^(-?\d+)(\.\d+)?e([+-])(\d+)$/.exec(text);
  return exp ? `${exp[1]}${exp[2] ?? ".0"}e${exp[3]}${exp[4]}` : text;
}

type Scalar = string | number | boolean | null | YamlFloat;

function scalar(v: Scalar): string {
  if (v === null) return "null";
  if (v instanceof YamlFloat) return Number.isInteger(v.value) ? `${v.value}.0` : yamlNumber(v.value);
  if (typeof v === "number") return yamlNumber(v);
  if (typeof v === "boolean") return String(v);
  // A JSON string is a YAML double-quoted scalar with the same escapes.
  return JSON.stringify(v);
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function key(k: string): string {
  return PLAIN_KEY.test(k) ? k : JSON.stringify(k);
}

function isMapping(v: YamlValue): v is { [key: string]: YamlValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof YamlFloat);
}

function block(value: { [key: string]: YamlValue }, indent: string): string[] {
  return Object.entries(value).flatMap(([k, v]) => entry(`${indent}${key(k)}:`, v, indent));
}

/** `head` is `key:` or `-`; the value follows on the same line or, for a non-empty collection, below it. */
function entry(head: string, v: YamlValue, indent: string): string[] {
  if (isMapping(v)) {
    return Object.keys(v).length === 0 ? [`${head} {}`] : [head, ...block(v, `${indent}  `)];
  }
  if (Array.isArray(v)) {
    if (v.every((x) => !isMapping(x) && !Array.isArray(x))) {
      return [`${head} [${v.map((x) => scalar(x as Scalar)).join(", ")}]`];
    }
    return [head, ...v.flatMap((item) => listItem(item, `${indent}  `))];
  }
  return [`${head} ${scalar(v)}`];
}

function listItem(item: YamlValue, indent: string): string[] {
  if (!isMapping(item) || Object.keys(item).length === 0) return entry(`${indent}-`, item, indent);
  // `- first: …` with the mapping's other keys aligned under `first`
  const [first, ...rest] = block(item, `${indent}  `);
  return [`${indent}- ${(first ?? "").trimStart()}`, ...rest];
}

/** A YAML document: `comment` lines (without `#`) first, then the mapping. */
export function toYaml(value: { [key: string]: YamlValue }, comment: readonly string[] = []): string {
  return [...comment.map((c) => (c === "" ? "#" : `# ${c}`)), ...block(value, "")].join("\n") + "\n";
}
