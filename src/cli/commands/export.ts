import type { Command } from "commander";
import { CONVERT_TYPES, parseConvertType } from "../../interop/convert.js";
import { DEFAULT_MAX_SHARD_SIZE, parseShardSize } from "../../interop/hf-write.js";
import { ENGINE_INFO, ENGINES, exportJob, parseEngine } from "../../jobs/index.js";
import { exportGguf, exportLoraAdapter } from "../../run/export.js";
import { exportHf, exportPeftAdapter } from "../../run/export-hf.js";
import { SFT_FIELDS } from "../../run/settings.js";
import { InputError } from "../../util/errors.js";
import { integerFrom, numberOption, numFlag } from "../flags.js";
import { addSftSettingFlags } from "../sft-flags.js";

const TYPES = ["F32", "F16", "BF16", "Q8_0"] as const;

/** `--base-gguf`: where the base of a moved run is now. */
const BASE_GGUF_HELP =
  "the base GGUF of a run whose base lived outside it, where it is now (the run moved; checked by the SHA-256 the run recorded)";

export function register(program: Command): void {
  const exp = program
    .command("export")
    .summary("export trained models (gguf, hf), or a training job for a distributed engine")
    .description("Export trained models, or a training job for a distributed engine.");
  exp
    .command("gguf")
    .description(
      "Write an SFT run (its newest checkpoint) or a checkpoint file as a GGUF that llama.cpp / node-llama-cpp\n" +
        "loads, with the tokenizer and the SteerLM schema and template in its metadata. A LoRA run is merged\n" +
        "into its base by default (--merge); --lora writes only the adapter, to load next to the untouched base\n" +
        "(node-llama-cpp's `lora` context option, llama.cpp's --lora, `steerlm serve --lora`).",
    )
    .argument("<run-or-checkpoint>", "a `steerlm sft` run directory or a checkpoints/step-*.ckpt file")
    .requiredOption("-o, --output <file>", "the GGUF to write")
    .option(
      "--type <type>",
      `storage type of the weight matrices: ${TYPES.join(", ")} (adapters: F32, F16)`,
      "F32",
    )
    .option("--lora", "write only the LoRA adapter of a `steerlm sft --lora` run")
    .option("--merge", "merge a LoRA run's adapters into full weights (what happens without --lora)")
    .option("--base-gguf <file>", BASE_GGUF_HELP)
    .action(
      async (
        input: string,
        opts: { output: string; type: string; lora?: boolean; merge?: boolean; baseGguf?: string },
      ) => {
        const type = opts.type.toUpperCase();
        if (!(TYPES as readonly string[]).includes(type)) {
          throw new InputError(`unknown type ${JSON.stringify(opts.type)} (one of ${TYPES.join(", ")})`, {
            field: "--type",
          });
        }
        if (opts.lora && opts.merge) {
          throw new InputError(
            "--lora writes the adapter alone and --merge writes merged weights: choose one",
            {
              field: "--lora",
            },
          );
        }
        if (opts.lora) {
          if (type !== "F32" && type !== "F16") {
            throw new InputError(`adapters are written as F32 or F16, not ${type}`, { field: "--type" });
          }
          const r = await exportLoraAdapter(input, opts.output, { type, baseGguf: opts.baseGguf });
          process.stderr.write(
            `wrote adapter ${r.path} (${(r.bytes / 1e6).toFixed(2)} MB) from ${r.checkpoint}, step ${r.step}; ` +
              `base: ${r.baseModel}\n`,
          );
          return;
        }
        const r = await exportGguf(input, opts.output, {
          type: type as (typeof TYPES)[number],
          baseGguf: opts.baseGguf,
        });
        process.stderr.write(
          `wrote ${r.path} (${(r.bytes / 1e6).toFixed(1)} MB) from ${r.checkpoint}, step ${r.step}\n`,
        );
      },
    );
  registerHf(exp);
  registerJob(exp);
}

/** `steerlm export job`: the settings and flags of `steerlm sft`, written as a job for another engine. */
function registerJob(exp: Command): void {
  const cmd = exp
    .command("job")
    .description(
      "Write a folder that runs SteerLM SFT as it is on a distributed engine: the\n" +
        "data in the engine's format, its config with steerlm's settings under the\n" +
        "engine's own keys, commands for one GPU, one machine's GPUs and several\n" +
        "machines, and a README with the mapping and the way back to a GGUF. Takes\n" +
        "the settings of `steerlm sft` (--config, flags); a setting the engine\n" +
        "cannot express is refused, before anything is written.\n" +
        `Engines: ${ENGINES.map((e) => `${e} (${ENGINE_INFO[e].title} ${ENGINE_INFO[e].version})`).join(", ")}.`,
    )
    .requiredOption("--engine <name>", `the engine: ${ENGINES.join(", ")}`)
    .option("--config <file>", "settings file of `steerlm sft` (YAML or JSON)")
    .addOption(numberOption("--gpus <n>", "GPUs per machine in the multi-GPU commands", integerFrom(1), 8))
    .addOption(numberOption("--nodes <n>", "machines in the multi-machine commands", integerFrom(1), 2));
  const resolve = addSftSettingFlags(cmd, SFT_FIELDS, {
    model: "Hugging Face directory or hub id (nemo-aligner: also a .nemo checkpoint)",
    output: "the job folder to write (new, or empty)",
  });
  cmd.action(async (raw: Record<string, string | boolean | undefined>) => {
    const engine = parseEngine(String(raw.engine));
    const typed = cmd.getOptionValueSource("model") === "cli" ? raw.model : undefined;
    const flags = cmd.opts();
    const r = await exportJob(resolve(raw), {
      engine,
      model: typeof typed === "string" ? typed : undefined,
      gpus: numFlag(flags, "gpus"),
      nodes: numFlag(flags, "nodes"),
    });
    const { title, version } = ENGINE_INFO[engine];
    process.stderr.write(
      `wrote ${r.dir} for ${title} ${version} (${r.steps} steps): ${r.files.join(", ")}; start with its README.md\n`,
    );
  });
}

function registerHf(exp: Command): void {
  exp
    .command("hf")
    .description(
      "Write an SFT run (its newest checkpoint), a checkpoint file or a GGUF model as a Hugging Face model\n" +
        "directory (config.json, safetensors, tokenizer.json and tokenizer_config.json with the steering chat\n" +
        "template, generation_config.json) that transformers, vLLM and `steerlm model convert` load. A LoRA run\n" +
        "is merged into its base; --lora writes a PEFT adapter directory for the untouched base instead.",
    )
    .argument("<run-or-model>", "a `steerlm sft` run directory, a checkpoints/step-*.ckpt file or a .gguf")
    .requiredOption("-o, --output <dir>", "the directory to write (created if missing)")
    .option("--type <type>", `dtype of the tensors: ${CONVERT_TYPES.join(", ")}`, "f32")
    .option(
      "--max-shard-size <size>",
      "shard the weights above this size, as save_pretrained does (e.g. 2GB, 500MiB)",
      `${DEFAULT_MAX_SHARD_SIZE / 1e9}GB`,
    )
    .option(
      "--lora",
      "write only the adapter of a `steerlm sft --lora` run, as a PEFT adapter directory",
      false,
    )
    .option(
      "--base-model <name-or-dir>",
      "with --lora: adapter_config.json's base_model_name_or_path (the base's Hugging Face export)",
    )
    .option("--base-gguf <file>", BASE_GGUF_HELP)
    .action(
      async (
        input: string,
        opts: {
          output: string;
          type: string;
          maxShardSize: string;
          lora: boolean;
          baseModel?: string;
          baseGguf?: string;
        },
      ) => {
        const type = parseConvertType(opts.type);
        if (opts.baseModel !== undefined && !opts.lora) {
          throw new InputError("names the base of an adapter: it needs --lora", { setting: "baseModel" });
        }
        if (opts.lora) {
          const r = await exportPeftAdapter(input, opts.output, {
            type,
            baseGguf: opts.baseGguf,
            ...(opts.baseModel !== undefined ? { baseModelName: opts.baseModel } : {}),
          });
          process.stderr.write(
            `wrote PEFT adapter ${r.dir} (${(r.bytes / 1e6).toFixed(2)} MB) from ${r.checkpoint}, step ${r.step}; ` +
              `base: ${r.baseModel} (\`steerlm export hf ${r.baseModel} -o <dir>\` writes it for transformers)\n`,
          );
          return;
        }
        const r = await exportHf(input, opts.output, {
          type,
          baseGguf: opts.baseGguf,
          maxShardSize: parseShardSize(opts.maxShardSize),
        });
        const from = r.checkpoint === null ? input : `${r.checkpoint}, step ${r.step}`;
        process.stderr.write(
          `wrote ${r.dir}: ${r.architecture}, ${r.shards.length} safetensors file(s), ` +
            `${(r.totalSize / 1e6).toFixed(1)} MB ${type}, from ${from}\n`,
        );
      },
    );
}
