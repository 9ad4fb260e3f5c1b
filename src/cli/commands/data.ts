import { type Command, Option } from "commander";
import { BUILTIN_SCHEMAS, loadSchema } from "../../data/attributes.js";
import { formatInspection } from "../../data/inspect.js";
import {
  convertFile,
  inspectFile,
  type JobOptions,
  type JobSummary,
  splitFile,
  validateFile,
} from "../../data/jobs.js";
import { detectFormat, NO_LABELS, parseFormat, UNLABELED_HINT } from "../../data/read.js";
import { DATA_FORMATS, OUTPUT_FORMATS, type OutputFormat } from "../../data/record.js";
import { parseOutputFormat } from "../../data/write.js";
import { removeTempFilesOnSignal } from "../../util/atomic.js";
import { log } from "../../util/log.js";
import { integerFrom, numberOption, optionForSetting } from "../flags.js";

/** `steerlm data ...`: parse arguments, call src/data/jobs.ts, print. */
interface ReadFlags {
  from?: string;
  schema?: string;
  skipInvalid?: boolean;
  rejects?: string;
  allowUnlabeled?: boolean;
  lang?: string;
  system?: string;
}

const SHOWN_REJECTS = 20;

function readOptions(cmd: Command): Command {
  return cmd
    .option("--from <format>", `input format: ${DATA_FORMATS.join(", ")} (default: detected)`)
    .option(
      "--schema <name|file>",
      `attribute schema: ${Object.keys(BUILTIN_SCHEMAS).join(", ")}, or a .json/.yaml file`,
    )
    .option("--skip-invalid", "keep going past invalid rows: report them all and keep every valid one")
    .addOption(
      optionForSetting(
        new Option(
          "--rejects <file>",
          "with --skip-invalid: write invalid rows here (JSONL: file, line, error, raw)",
        ),
        "rejectsPath",
      ),
    )
    .option("--allow-unlabeled", "accept conversations without attribute labels (plain SFT data)")
    .option("--lang <code>", "oasst: keep only trees in this language (e.g. en)")
    .option("--system <text>", "system prompt for rows that carry none (helpsteer, oasst, chat)");
}

function jobOptions(flags: ReadFlags, defaultRejects?: string): JobOptions {
  return {
    format: flags.from === undefined ? undefined : parseFormat(flags.from),
    schema: flags.schema,
    skipInvalid: flags.skipInvalid,
    rejectsPath: flags.skipInvalid ? (flags.rejects ?? defaultRejects) : undefined,
    allowUnlabeled: flags.allowUnlabeled,
    lang: flags.lang,
    system: flags.system,
  };
}

/** Prints what was skipped and why; nothing valid is dropped without a line saying so. */
function reportSkipped(summary: JobSummary, rejectsPath: string | undefined): void {
  const { stats, rejected } = summary;
  for (const [reason, n] of Object.entries(stats.filtered)) log.info(`skipped ${n} rows: ${reason}`);
  const n = stats.rejected;
  if (n === 0) return;
  log.warn(
    `${n} invalid row${n === 1 ? "" : "s"} skipped${rejectsPath ? ` (written to ${rejectsPath})` : ""}:`,
  );
  for (const r of rejected.slice(0, SHOWN_REJECTS)) log.warn(`  ${r.error}`);
  if (n > SHOWN_REJECTS) log.warn(`  ... and ${n - SHOWN_REJECTS} more`);
  if (rejected.some((r) => r.error.includes(NO_LABELS))) log.warn(`hint: ${UNLABELED_HINT}`);
}

function outputFormat(name: string): OutputFormat {
  return parseOutputFormat(name);
}

export function register(program: Command): void {
  const data = program
    .command("data")
    .description(
      "import, convert, validate, inspect and split SteerLM data (NeMo, HelpSteer, OpenAssistant, chat)",
    );

  readOptions(
    data
      .command("convert <input>")
      .description("convert a file between formats (NeMo files are re-written byte for byte)")
      .requiredOption("--to <format>", `output format: ${OUTPUT_FORMATS.join(", ")}`)
      .requiredOption("-o, --output <file>", "output JSONL file (written atomically)"),
  ).action(async (input: string, flags: ReadFlags & { to: string; output: string }) => {
    removeTempFilesOnSignal();
    const to = outputFormat(flags.to);
    const rejectsPath = flags.skipInvalid ? (flags.rejects ?? `${flags.output}.rejects.jsonl`) : undefined;
    const opts = jobOptions(flags, rejectsPath);
    const write = flags.schema ? { schema: loadSchema(flags.schema) } : {};
    const r = await convertFile(input, flags.output, to, { ...opts, write });
    reportSkipped(r, rejectsPath);
    log.info(
      `wrote ${r.lines} ${to} lines from ${r.stats.records} records (${r.stats.format}, schema ${r.stats.schema}) to ${flags.output}`,
    );
  });

  readOptions(
    data
      .command("validate <file>")
      .description(
        "check every row strictly; exit 1 at the first invalid row (all of them with --skip-invalid)",
      ),
  ).action(async (file: string, flags: ReadFlags) => {
    removeTempFilesOnSignal();
    const r = await validateFile(file, jobOptions(flags));
    reportSkipped(r, flags.rejects);
    const { stats } = r;
    process.stdout.write(
      `${file}: ${stats.format}, schema ${stats.schema}: ${stats.records} valid records from ${stats.rows} rows` +
        (stats.rejected > 0 ? `, ${stats.rejected} invalid\n` : "\n"),
    );
    if (stats.rejected > 0) process.exitCode = 1;
  });

  readOptions(
    data
      .command("inspect <file>")
      .description("counts, turns and per-attribute histograms")
      .option("--json", "print the figures as JSON"),
  ).action(async (file: string, flags: ReadFlags & { json?: boolean }) => {
    removeTempFilesOnSignal();
    const r = await inspectFile(file, jobOptions(flags));
    reportSkipped(r, flags.rejects);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ ...r.stats, ...r.inspection }, null, 2)}\n`);
      return;
    }
    const order = r.stats.schema ? loadSchema(r.stats.schema).attributes.map((a) => a.name) : [];
    process.stdout.write(
      `${file}: ${r.stats.format}, schema ${r.stats.schema}\n${formatInspection(r.inspection, order)}\n`,
    );
  });

  readOptions(
    data
      .command("split <input>")
      .description("deterministic train/validation split from a seed")
      .requiredOption("--train <file>", "training output")
      .requiredOption("--validation <file>", "validation output")
      .addOption(
        numberOption("--fraction <x>", "share of records for validation, 0..1", { min: 0, max: 1 }, 0.05),
      )
      .addOption(numberOption("--seed <n>", "random seed", integerFrom(0), 1234))
      .option(
        "--to <format>",
        `output format: ${OUTPUT_FORMATS.join(", ")} (default: the input's, else steerlm)`,
      ),
  ).action(
    async (
      input: string,
      flags: ReadFlags & { train: string; validation: string; fraction: number; seed: number; to?: string },
    ) => {
      removeTempFilesOnSignal();
      const { fraction, seed } = flags;
      const rejectsPath = flags.skipInvalid ? (flags.rejects ?? `${flags.train}.rejects.jsonl`) : undefined;
      const opts = jobOptions(flags, rejectsPath);
      const from = opts.format ?? (await detectFormat(input));
      const to =
        flags.to !== undefined
          ? outputFormat(flags.to)
          : from && (OUTPUT_FORMATS as readonly string[]).includes(from)
            ? (from as OutputFormat)
            : undefined;
      const write = flags.schema ? { schema: loadSchema(flags.schema) } : {};
      const r = await splitFile(
        input,
        { train: flags.train, validation: flags.validation },
        { fraction, seed, to: to ?? "steerlm", write },
        opts,
      );
      reportSkipped(r, rejectsPath);
      log.info(
        `split ${r.stats.records} records (seed ${flags.seed}): ${r.split.train} to ${flags.train}, ${r.split.validation} to ${flags.validation}`,
      );
    },
  );
}
