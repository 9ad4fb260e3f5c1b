import { SFT_FIELDS } from "../run/settings.js";
import { version } from "../version.js";
import { ENGINE_INFO } from "./engines.js";
import { modelName } from "./model.js";
import type { BuiltJob, JobPlan } from "./plan.js";
import { YamlFloat, type YamlValue, yamlNumber } from "./yaml.js";

/**
 * The README of a job folder: what the job is, the engine release it targets, the commands (install, one
 * GPU, more GPUs, more machines), every steerlm setting with the engine keys it became, what differs from
 * `steerlm sft`, and how the trained model comes back to steerlm.
 */

/** The value at a dotted path of a config (`policy.optimizer.kwargs.lr`); undefined when absent. */
export function valueAt(config: { [key: string]: YamlValue }, dotted: string): YamlValue | undefined {
  let at: YamlValue | undefined = config;
  for (const part of dotted.split(".")) {
    if (typeof at !== "object" || at === null || Array.isArray(at) || at instanceof YamlFloat)
      return undefined;
    at = at[part];
  }
  return at;
}

function shown(v: unknown): string {
  if (v instanceof YamlFloat) return Number.isInteger(v.value) ? `${v.value}.0` : yamlNumber(v.value);
  if (typeof v === "number") return yamlNumber(v);
  if (v === null || v === undefined) return "unset";
  return typeof v === "string" ? v : JSON.stringify(v, (_k, x) => (x instanceof YamlFloat ? x.value : x));
}

const cell = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");

export function renderReadme(plan: JobPlan, job: BuiltJob): string {
  const info = ENGINE_INFO[plan.engine];
  const config = job.config.value;
  const keyText = (k: string) => {
    const v = valueAt(config, k);
    // a mapping that names a key the config lacks is a bug of the engine's builder, not the user's
    if (v === undefined) throw new Error(`${plan.engine} job: ${k} is not in ${job.config.path}`);
    return `\`${k}: ${shown(v)}\``;
  };
  const model = modelName(plan.model);
  const lines = [
    `# SteerLM SFT job for ${info.title} ${info.version}`,
    "",
    `Written by \`steerlm export job --engine ${plan.engine}\` (steerlm ${version}): attribute-conditioned SFT (SteerLM) of \`${model}\` with the settings of a \`steerlm sft\` run, as ${info.title} expresses them. ${job.facts.join(" ")}`,
    "",
    `Targets **${info.title} ${info.version}**: every key of \`${job.config.path}\` was checked against ${info.source}. Also: ${info.pins.join("; ")}.`,
    "",
    "## Files",
    "",
    ...job.files.map((f) => `- \`${f.path}\` (${f.text.split("\n").length - 1} lines)`),
    "",
    "## Install",
    "",
    "```sh",
    ...job.install,
    "```",
    "",
    "## Run",
    "",
    ...job.launches.flatMap((l) => [
      `### ${l.title}`,
      "",
      ...(l.note ? [l.note, ""] : []),
      ...(l.commands.length > 0 ? ["```sh", ...l.commands, "```", ""] : []),
    ]),
    "## Settings",
    "",
    `Every setting of \`steerlm sft\`, and what it became. exact: ${info.title} computes what steerlm does; close: see the note; n/a: nothing to map.`,
    "",
    `| steerlm | value | ${info.title} | exact? | note |`,
    "|---|---|---|---|---|",
    ...SFT_FIELDS.map((k) => {
      const row = job.mapping[k];
      const keys = row.keys.map(keyText).join(", ") || "—";
      const value = k === "model" ? model : shown(plan.cfg[k]);
      return `| ${k} | ${cell(value)} | ${cell(keys)} | ${row.exact} | ${cell(row.note ?? "")} |`;
    }),
    "",
    `Set with no steerlm counterpart:`,
    "",
    ...job.fixed.map((f) => `- ${f.keys.map(keyText).join(", ")}: ${f.note}`),
    "",
    "## What differs from `steerlm sft`",
    "",
    ...job.differences.map((d) => `- ${d}`),
    "",
    "## Bring the result back",
    "",
    ...job.bringBack.flatMap((p) => [p, ""]),
  ];
  return lines.join("\n");
}
